"""An IOI model whose mechanism is planted by strict interchange-intervention training (SIIT).

Gupta et al. 2024 (*InterpBench*) train small transformers with strict IIT (Geiger et al. 2022, *Inducing Causal
Structure for Interpretable Neural Networks*) so that a given high-level causal model is, by construction, the
mechanism; their IOI model (6 layers x 4 heads, d_model 64) implements duplicate-token -> S-inhibition -> name
mover. Here a smaller attention-only model (default 3 layers x 4 heads, d_model 64, d_head 16, LayerNorm) learns
the same graph on the project's IOI prompts: one paper template under the toy tokenizer, ABBA and BABA mixed, so
that S2 and END sit at fixed positions, the two first names at two fixed slots, and the subject's slot varies.

**High-level model** (per prompt; slot A / slot B = the positions of the first and the second name):

* ``DUP`` at S2: which slot holds the name repeated at S2 (S's slot);
* ``SINH`` at END: DUP's value, copied;
* ``NM`` at END: the token in the slot SINH does not name (= IO).

An interchange intervention on a (base, source) pair of same-template prompts sets one variable to its value on
the source; the counterfactual label is NM's output: for DUP and SINH, the base's token in the slot that the
source's DUP does *not* name (base IO when both S sit in the same slot, base S otherwise); for NM, the source's IO.
The low-level intervention replaces the mapped head's ``hook_z`` *at that variable's position only* (S2 for DUP,
END for SINH and NM) with its value on the source: the high-level variables live at one position each, and
patching every position would also move what the heads write elsewhere, which the high-level model says nothing
about.

**Loss** (SIIT), weights configurable: (1) behaviour: cross-entropy of IO at END on the base prompts; (2) IIT:
cross-entropy of the counterfactual label, each prompt of the batch intervened on one variable drawn for it (a
draw per prompt rather than per step: the same expectation, less variance); (3) strict: the base prompts again,
each with a random subset of the non-circuit heads (each with probability ``strict_fraction``) taking its output
on the source at every position; the base label must still come out. Resampling one head at a time was not
enough: two layer-0 heads then carried IO's token to S2 together, each redundant given the other. The source of
prompt i is prompt i + 1 of the batch (activations detached). Training details that mattered (measured on 3-7
seeds, 2 CPU cores):

* the names of every training prompt are redrawn each step (:func:`redraw_names`): on a fixed pool of 1,000
  prompts the model memorised it (92% on the pool, chance on held-out prompts);
* LayerNorm: without it the model did not learn IOI at all in 1,500 steps;
* ``flip_fraction`` 1.0: every training source has S in the other slot than its base, so every DUP / SINH
  intervention changes the label (with independent sources half of them do not and teach nothing the behaviour
  term does not). With 0.5, 4 of 6 runs reached the target within 1,200 steps; with 1.0, 5 of 7 within 700
  (the other two: one at 0.74 and rising at 900 steps, one stuck). The held-out accuracies use independent
  sources, so a shortcut that only works for flipped pairs would show there.

**Ground truth** (ablation ``"patching"``: IIT defines the circuit by interchange with other prompts): the edges
input -> DUP <q> <k> <v>; input -> SINH <q> <k>; DUP -> SINH <v>; input -> NM <q> <k> <v>; SINH -> NM <q>;
NM -> logits. The direct path input -> logits is *left out*: END holds the same word at the same position in every
prompt of a template, so the embedding there carries nothing about the names, and its patching score (clean vs
ABC) is exactly zero. For the same reason input -> SINH <q> and input -> NM <q> (both read END's embedding alone)
score exactly zero under patching: they are kept because the mechanism needs them (a query that knows it is at
END), not because a clean / ABC patch can see them. :func:`ground_truth_scores` reports the exact edge scores of
the ground-truth edges, so this is visible per model.

The trained model is a ground truth only at its target: :func:`train` raises :class:`IITTargetNotReached` when the
held-out IIT accuracy of any variable, or the plain IOI top-1 accuracy, is below ``target_accuracy``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer, HookedTransformerConfig

from mechrepro.data import vocab as V
from mechrepro.data.tokenizer import build_tokenizer, single_token_id
from mechrepro.groundtruth import GroundTruth
from mechrepro.groundtruth.handbuilt import edge_mask
from mechrepro.tasks.ioi import (
    PAPER_TEMPLATES,
    IOIConfig,
    IOIPrompts,
    abc_corruption,
    group_prompts,
    ioi_metrics,
    make_ioi_prompts,
)
from mechrepro.techniques.edges import Pairs, exact_scores
from mechrepro.techniques.engine import final_logits
from mechrepro.techniques.graph import HEAD, INPUT, LOGITS, Graph

NAME = "planted-ioi"
VARIABLES = ("duplicate", "s_inhibition", "name_mover")  # the high-level nodes DUP, SINH, NM
CLASS_OF = {"duplicate": "duplicate_token", "s_inhibition": "s_inhibition", "name_mover": "name_mover"}
_TEMPLATES = {t.name: t for t in PAPER_TEMPLATES}


class IITTargetNotReached(RuntimeError):
    """The trained model's held-out IIT (or IOI) accuracy is below the target: it is not a ground truth."""


@dataclass(frozen=True)
class PlantedIOIConfig:
    """How the planted IOI model is built and trained. Heads are (layer, head)."""

    n_layers: int = 3
    n_heads: int = 4
    d_model: int = 64
    d_head: int = 16
    normalization: str | None = "LN"  # "LN" or None (without LayerNorm it did not learn IOI in 1,500 steps)
    duplicate: tuple[int, int] = (0, 1)
    s_inhibition: tuple[int, int] = (1, 2)
    name_mover: tuple[int, int] = (2, 3)
    template: str = "paper-06"  # one paper template (the toy tokenizer has no "commuting": not paper-10)
    steps: int = 1200
    lr: float = 3e-3
    weight_decay: float = 0.0
    batch_size: int = 48
    behaviour_weight: float = 1.0
    iit_weight: float = 1.0
    strict_weight: float = 0.2
    strict_fraction: float = 0.25  # per strict row, each strict unit is resampled with this probability
    strict_loss: str = "ce"  # "ce": the base label; "kl": the base run's whole output distribution (detached)
    strict_all_fraction: float = 0.0  # strict rows with every non-circuit head resampled at once
    strict_circuit_positions: bool = True  # strict units include each planted head off its variable's position
    flip_fraction: float = 1.0  # how often a training source has S in the other slot than its base
    target_accuracy: float = 0.9
    n_prompts: int = 500  # training pool: templates' places and objects (names are redrawn every step)
    n_eval: int = 256  # held-out prompts (another seed) for the accuracies
    seed: int = 0

    def __post_init__(self):
        for k in ("n_layers", "n_heads", "d_model", "d_head", "steps", "batch_size", "n_prompts", "n_eval"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"PlantedIOIConfig.{k} must be a positive integer, got {v!r}")
        if self.batch_size < 2 or self.n_eval < 2:
            raise ValueError("PlantedIOIConfig.batch_size and n_eval must be >= 2 (sources are other prompts)")
        if self.normalization not in (None, "LN"):
            raise ValueError(f"PlantedIOIConfig.normalization must be None or 'LN', got {self.normalization!r}")
        for k in ("lr",):
            if not (isinstance(getattr(self, k), (int, float)) and getattr(self, k) > 0):
                raise ValueError(f"PlantedIOIConfig.{k} must be > 0, got {getattr(self, k)!r}")
        for k in ("weight_decay", "behaviour_weight", "iit_weight", "strict_weight"):
            v = getattr(self, k)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"PlantedIOIConfig.{k} must be a finite number >= 0, got {v!r}")
        if not 0 <= self.flip_fraction <= 1:
            raise ValueError(f"PlantedIOIConfig.flip_fraction must be in [0, 1], got {self.flip_fraction!r}")
        if self.strict_loss not in ("ce", "kl"):
            raise ValueError(f"PlantedIOIConfig.strict_loss must be 'ce' or 'kl', got {self.strict_loss!r}")
        if not 0 <= self.strict_all_fraction <= 1:
            raise ValueError(f"PlantedIOIConfig.strict_all_fraction must be in [0, 1], got {self.strict_all_fraction!r}")
        if not 0 < self.strict_fraction <= 1:
            raise ValueError(f"PlantedIOIConfig.strict_fraction must be in (0, 1], got {self.strict_fraction!r}")
        if self.iit_weight == 0:
            raise ValueError("PlantedIOIConfig.iit_weight is 0: nothing would plant the mechanism")
        if not 0 < self.target_accuracy <= 1:
            raise ValueError(f"PlantedIOIConfig.target_accuracy must be in (0, 1], got {self.target_accuracy!r}")
        if self.template not in _TEMPLATES:
            raise ValueError(f"PlantedIOIConfig.template: unknown template {self.template!r} "
                             f"(known: {', '.join(_TEMPLATES)})")
        seen = {}
        for var, head in self.heads.items():
            if not (isinstance(head, tuple) and len(head) == 2 and all(isinstance(x, int) for x in head)):
                raise ValueError(f"PlantedIOIConfig.{var} must be a (layer, head) pair of ints, got {head!r}")
            layer, h = head
            if not (0 <= layer < self.n_layers and 0 <= h < self.n_heads):
                raise ValueError(f"planted {var} head {layer}.{h} is outside the model "
                                 f"({self.n_layers} layers x {self.n_heads} heads)")
            if head in seen:
                raise ValueError(f"planted {var} and {seen[head]} heads are the same head {layer}.{h}")
            seen[head] = var
        d, s, n = self.duplicate[0], self.s_inhibition[0], self.name_mover[0]
        if not d < s < n:
            raise ValueError(f"the planted heads must sit in increasing layers (duplicate < s_inhibition < "
                             f"name_mover: each reads the one before), got layers {d}, {s}, {n}")

    @property
    def heads(self) -> dict[str, tuple[int, int]]:
        return {v: getattr(self, v) for v in VARIABLES}

    @property
    def classes(self) -> dict[str, list[tuple[int, int]]]:
        return {CLASS_OF[v]: [h] for v, h in self.heads.items()}

    def non_circuit_heads(self) -> list[tuple[int, int]]:
        planted = set(self.heads.values())
        return [(la, h) for la in range(self.n_layers) for h in range(self.n_heads) if (la, h) not in planted]

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


# ---------------------------------------------------------------------------------------------
# Data: prompts of one template, their slots and labels.

@dataclass(frozen=True)
class _Batch:
    tokens: Tensor  # [n pos]
    io: Tensor  # [n]
    s: Tensor  # [n]
    slots: Tensor  # [n 2] token in slot A (first name) and slot B (second name)
    dup: Tensor  # [n] 0 / 1: the slot holding S (DUP's value)
    pos: dict[str, int]  # n1, n2, s2, end

    def take(self, ix: Tensor) -> _Batch:
        return _Batch(self.tokens[ix], self.io[ix], self.s[ix], self.slots[ix], self.dup[ix], self.pos)


def prompts(tokenizer, cfg: PlantedIOIConfig, n: int, seed: int) -> IOIPrompts:
    """``n`` IOI prompts of ``cfg.template`` (ABBA and BABA alternating), toy names, places and objects."""
    return make_ioi_prompts(tokenizer, n, seed, names=V.NAMES, places=V.PLACES, objects=V.OBJECTS,
                            templates=[_TEMPLATES[cfg.template]])


def _batch(p: IOIPrompts) -> _Batch:
    tokens = torch.tensor(p.tokens)
    pos = {k: {int(x) for x in p.positions[k]} for k in ("s2", "end")}
    names = {int(x) for k in ("io", "s1") for x in p.positions[k]}  # IO and S1 swap between ABBA and BABA
    if any(len(v) != 1 for v in pos.values()) or len(names) != 2 or len({len(t) for t in p.tokens}) != 1:
        raise ValueError("planted IOI prompts of one template must share their length and role positions")
    n1, n2 = sorted(names)
    slots = tokens[:, [n1, n2]]
    dup = (slots[:, 1] == p.s).long()  # 1: S is the second name (ABBA)
    if not ((slots.gather(1, dup[:, None])[:, 0] == p.s) & (slots.gather(1, 1 - dup[:, None])[:, 0] == p.io)).all():
        raise ValueError("planted IOI prompts: the two name slots do not hold IO and S")
    return _Batch(tokens, p.io, p.s, slots, dup, {"n1": n1, "n2": n2, "s2": pos["s2"].pop(), "end": pos["end"].pop()})


def redraw_names(b: _Batch, name_ids: Tensor, gen: torch.Generator) -> _Batch:
    """The same prompts (template, order, place, object) with IO and S redrawn from ``name_ids`` (two different
    names per prompt), written into both slots and S2: fresh name pairs every step, so that the model cannot
    memorise a prompt pool (with a fixed pool of 1,000 prompts it did: 92% on it, chance on held-out prompts)."""
    n = len(b.io)
    first = torch.randint(0, len(name_ids), (n,), generator=gen)
    second = (first + torch.randint(1, len(name_ids), (n,), generator=gen)) % len(name_ids)  # != first
    io, s = name_ids[first], name_ids[second]
    slots = torch.where(b.dup[:, None] == 1, torch.stack([io, s], 1), torch.stack([s, io], 1))
    tokens = b.tokens.clone()
    tokens[:, b.pos["n1"]], tokens[:, b.pos["n2"]], tokens[:, b.pos["s2"]] = slots[:, 0], slots[:, 1], s
    return _Batch(tokens, io, s, slots, b.dup, b.pos)


def _draw(data: _Batch, cfg: PlantedIOIConfig, gen: torch.Generator) -> Tensor:
    """Indices of a batch whose row i + 1 (row i's source) holds S in the other slot than row i with probability
    ``cfg.flip_fraction`` (0.5: sources independent of their bases)."""
    n = cfg.batch_size
    flips = (torch.rand(n, generator=gen) < cfg.flip_fraction).long()
    dup = (torch.randint(0, 2, (1,), generator=gen) + torch.cumsum(flips, 0) - flips[0]) % 2
    pools = [(data.dup == k).nonzero()[:, 0] for k in (0, 1)]
    pick = [pools[k][torch.randint(0, len(pools[k]), (n,), generator=gen)] for k in (0, 1)]
    return torch.where(dup == 1, pick[1], pick[0])


def counterfactual(base: _Batch, source: _Batch, variable: str) -> Tensor:
    """The high-level model's output when ``variable`` takes its value on ``source`` (module docstring)."""
    if variable in ("duplicate", "s_inhibition"):
        return base.slots.gather(1, (1 - source.dup)[:, None])[:, 0]
    if variable == "name_mover":
        return source.io
    raise ValueError(f"unknown high-level variable {variable!r}; known: {', '.join(VARIABLES)}")


def _position(variable: str, pos: dict[str, int]) -> int:
    return pos["s2"] if variable == "duplicate" else pos["end"]


# ---------------------------------------------------------------------------------------------
# Model, interventions, training.

def make_model(cfg: PlantedIOIConfig, d_vocab: int, n_ctx: int) -> HookedTransformer:
    hcfg = HookedTransformerConfig(n_layers=cfg.n_layers, d_model=cfg.d_model, n_heads=cfg.n_heads,
                                   d_head=cfg.d_head, n_ctx=n_ctx, d_vocab=d_vocab, attn_only=True,
                                   normalization_type=cfg.normalization, positional_embedding_type="standard",
                                   default_prepend_bos=False, seed=cfg.seed)
    return HookedTransformer(hcfg, move_to_device=False)


def _end_logits(model: HookedTransformer, tokens: Tensor, end: int, hooks=()) -> Tensor:
    with model.hooks(fwd_hooks=list(hooks)):
        resid = model(tokens, stop_at_layer=model.cfg.n_layers)
    return final_logits(model, resid[:, end:end + 1], last_only=False)[:, 0]


def _z_name(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_z"


def _replace_hooks(masks: dict[int, Tensor], source_z: dict[int, Tensor]) -> list:
    """Hooks replacing ``hook_z`` of layer l by ``source_z[l]`` where ``masks[l]`` [rows pos head] is True."""
    def hook(z, hook):
        la = int(hook.name.split(".")[1])
        return torch.where(masks[la][..., None].to(z.device), source_z[la].to(z.dtype), z)
    return [(_z_name(la), hook) for la in masks]


def _cache_z(model: HookedTransformer, store: dict[int, Tensor]) -> list:
    def hook(z, hook):
        store[int(hook.name.split(".")[1])] = z.detach()
        return z
    return [(_z_name(la), hook) for la in range(model.cfg.n_layers)]


def _masks(cfg: PlantedIOIConfig, n_pos: int, rows: int, entries) -> dict[int, Tensor]:
    """Per layer a bool [rows pos head] mask, True at every (rows: slice or index tensor; positions: an int, a list
    of ints or None = all; (layer, head))."""
    out: dict[int, Tensor] = {}
    for rs, pos, (la, h) in entries:
        m = out.setdefault(la, torch.zeros(rows, n_pos, cfg.n_heads, dtype=torch.bool))
        r = torch.arange(rows)[rs] if isinstance(rs, slice) else rs
        p = torch.arange(n_pos) if pos is None else torch.as_tensor(pos).reshape(-1)
        m[r[:, None], p[None, :], h] = True
    return out


def strict_units(cfg: PlantedIOIConfig, pos: dict[str, int], n_pos: int) -> list[tuple[str, tuple[int, int], list]]:
    """What the strict term resamples, each unit on its own draw: every non-circuit head at every position, and
    (``strict_circuit_positions``) every planted head at every position except its variable's. (name, head,
    positions) each."""
    every = list(range(n_pos))
    units = [(f"{la}.{h}", (la, h), every) for la, h in cfg.non_circuit_heads()]
    if cfg.strict_circuit_positions:
        for var, (la, h) in cfg.heads.items():
            at = _position(var, pos)
            units.append((f"{la}.{h} off {'S2' if var == 'duplicate' else 'END'}", (la, h),
                          [p for p in every if p != at]))
    return units


def _step_loss(model: HookedTransformer, cfg: PlantedIOIConfig, base: _Batch, variables: Tensor,
               strict: Tensor) -> tuple[Tensor, dict[str, float]]:
    """The SIIT loss of one batch: ``variables`` [n] (index into :data:`VARIABLES`) is the variable intervened on
    in row i; ``strict`` [n unit] bool the :func:`strict_units` resampled in row i's strict run. Row i's source
    is row i + 1 (detached): same template, other names."""
    end, n = base.pos["end"], len(base.io)
    z: dict[int, Tensor] = {}
    logits = _end_logits(model, base.tokens, end, _cache_z(model, z))
    behaviour = F.cross_entropy(logits, base.io)
    roll = torch.roll(torch.arange(n), -1)
    source = base.take(roll)
    src_z = {la: torch.cat([v[roll], v[roll]]) for la, v in z.items()}
    entries, labels = [], base.io.clone()
    for k, var in enumerate(VARIABLES):
        rows = (variables == k).nonzero()[:, 0]
        entries.append((rows, _position(var, base.pos), cfg.heads[var]))
        labels[rows] = counterfactual(base, source, var)[rows]
    units = strict_units(cfg, base.pos, base.tokens.shape[1])
    for k, (_, head, positions) in enumerate(units):
        entries.append((n + strict[:, k].nonzero()[:, 0], positions, head))
    masks = _masks(cfg, base.tokens.shape[1], 2 * n, entries)
    out = _end_logits(model, torch.cat([base.tokens, base.tokens]), end,
                      _replace_hooks(masks, {la: src_z[la] for la in masks}))
    iit = F.cross_entropy(out[:n], labels)
    if not units:
        kept = torch.zeros(())
    elif cfg.strict_loss == "kl":  # the output distribution must not move at all (base run's, detached)
        kept = F.kl_div(F.log_softmax(out[n:], -1), F.log_softmax(logits.detach(), -1), log_target=True,
                        reduction="batchmean")
    else:
        kept = F.cross_entropy(out[n:], base.io)
    loss = cfg.behaviour_weight * behaviour + cfg.iit_weight * iit + cfg.strict_weight * kept
    return loss, {"behaviour": behaviour.item(), "iit": iit.item(), "strict": kept.item()}


def _strict_draw(cfg: PlantedIOIConfig, n_units: int, gen: torch.Generator) -> Tensor:
    """[batch unit] bool: each unit with probability ``strict_fraction``; in a ``strict_all_fraction`` of the rows
    also every non-circuit head (the first units), so that redundant non-circuit heads cannot carry the task
    together."""
    draw = torch.rand(cfg.batch_size, n_units, generator=gen) < cfg.strict_fraction
    everything = torch.rand(cfg.batch_size, generator=gen) < cfg.strict_all_fraction
    draw[:, :len(cfg.non_circuit_heads())] |= everything[:, None]
    return draw


def fit(cfg: PlantedIOIConfig, tokenizer=None, progress: bool | None = None) -> tuple[HookedTransformer, dict]:
    """Train the model (no certification): (model, {"history": losses every 50 steps, "wall_s": ...})."""
    tokenizer = tokenizer if tokenizer is not None else build_tokenizer()
    data = _batch(prompts(tokenizer, cfg, cfg.n_prompts, cfg.seed))
    model = make_model(cfg, len(tokenizer), data.tokens.shape[1])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread ran 2.5-13x faster than two (2 cores, other jobs)
    try:
        return _fit(model, cfg, data, tokenizer, progress)
    finally:
        torch.set_num_threads(threads)


def _fit(model: HookedTransformer, cfg: PlantedIOIConfig, data: _Batch, tokenizer, progress: bool | None):
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    name_ids = torch.tensor([single_token_id(tokenizer, " " + w) for w in V.NAMES])
    n_units = len(strict_units(cfg, data.pos, data.tokens.shape[1]))  # the non-circuit heads first
    history = []
    t0 = time.perf_counter()
    # progress None: a bar on a terminal only (tqdm's disable=None)
    bar = tqdm(range(cfg.steps), desc="planted IOI (SIIT)", disable=None if progress is None else not progress,
               leave=False)
    for step in bar:
        base = redraw_names(data.take(_draw(data, cfg, gen)), name_ids, gen)
        variables = torch.randint(0, len(VARIABLES), (cfg.batch_size,), generator=gen)
        strict = _strict_draw(cfg, n_units, gen)
        loss, parts = _step_loss(model, cfg, base, variables, strict)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == cfg.steps - 1:
            history.append({"step": step, "loss": loss.item(), **parts})
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return model, {"history": history, "wall_s": time.perf_counter() - t0}


# ---------------------------------------------------------------------------------------------
# Accuracies and certification.

@torch.no_grad()
def accuracies(model: HookedTransformer, cfg: PlantedIOIConfig, tokenizer=None, n: int | None = None,
               seed: int | None = None) -> dict:
    """On held-out prompts (seed ``cfg.seed + 1`` unless given): per variable the fraction of interventions
    (base, source) whose argmax is the counterfactual label (``iit_accuracy``), and that fraction over the
    pairs whose label differs from the base's IO (``iit_accuracy_changed``; sources: a seeded permutation); the strict accuracy (every non-circuit
    head resampled alone at every position; the base IO must stay the argmax), per head and its minimum; and the
    plain IOI metrics (logit difference, IO > S, top-1)."""
    tokenizer = tokenizer if tokenizer is not None else build_tokenizer()
    p = prompts(tokenizer, cfg, n or cfg.n_eval, cfg.seed + 1 if seed is None else seed)
    base = _batch(p)
    k = len(base.io)
    # sources: a seeded permutation (not the next prompt: make_ioi_prompts alternates ABBA and BABA)
    roll = torch.randperm(k, generator=torch.Generator().manual_seed(cfg.seed + 2))
    source = base.take(roll)
    end = base.pos["end"]
    z: dict[int, Tensor] = {}
    logits = _end_logits(model, base.tokens, end, _cache_z(model, z))
    src_z = {la: v[roll] for la, v in z.items()}
    out = {"ioi": ioi_metrics(logits, p), "iit_accuracy": {}, "iit_accuracy_changed": {}, "strict_accuracy": {}}
    for var in VARIABLES:
        masks = _masks(cfg, base.tokens.shape[1], k, [(slice(None), _position(var, base.pos), cfg.heads[var])])
        pred = _end_logits(model, base.tokens, end, _replace_hooks(masks, src_z)).argmax(-1)
        label = counterfactual(base, source, var)
        changed = label != base.io
        out["iit_accuracy"][var] = float((pred == label).float().mean())
        out["iit_accuracy_changed"][var] = float((pred == label)[changed].float().mean()) if changed.any() else None
    for name, head, positions in strict_units(cfg, base.pos, base.tokens.shape[1]):
        masks = _masks(cfg, base.tokens.shape[1], k, [(slice(None), positions, head)])
        pred = _end_logits(model, base.tokens, end, _replace_hooks(masks, src_z)).argmax(-1)
        out["strict_accuracy"][name] = float((pred == base.io).float().mean())
    out["strict_accuracy_min"] = min(out["strict_accuracy"].values(), default=None)
    out["n_prompts"] = k
    return out


def certify(acc: dict, target: float) -> None:
    """Raise :class:`IITTargetNotReached` unless every variable's IIT accuracy and the IOI top-1 accuracy reach
    ``target`` (the message lists every accuracy)."""
    reached = {**{f"iit[{v}]": a for v, a in acc["iit_accuracy"].items()}, "ioi_top1": acc["ioi"]["ioi_top1"]}
    low = {k: a for k, a in reached.items() if a < target}
    if low:
        raise IITTargetNotReached(
            f"planted IOI model below its target accuracy {target}: {', '.join(f'{k} = {a:.3f}' for k, a in low.items())}"
            f" (reached: {', '.join(f'{k} = {a:.3f}' for k, a in reached.items())}; strict (min over non-circuit "
            f"heads) = {acc['strict_accuracy_min']}); not a ground truth: train longer or change the settings")


# ---------------------------------------------------------------------------------------------
# The ground truth.

def ground_truth_edges(cfg: PlantedIOIConfig) -> list:
    dup, sinh, nm = cfg.duplicate, cfg.s_inhibition, cfg.name_mover
    inp = (INPUT, None)
    return [(inp, ("q", dup)), (inp, ("k", dup)), (inp, ("v", dup)),
            (inp, ("q", sinh)), (inp, ("k", sinh)), ((HEAD, dup), ("v", sinh)),
            (inp, ("q", nm)), (inp, ("k", nm)), (inp, ("v", nm)), ((HEAD, sinh), ("q", nm)),
            ((HEAD, nm), (LOGITS, None))]


def train(cfg: PlantedIOIConfig = PlantedIOIConfig(), tokenizer=None, progress: bool | None = None) -> GroundTruth:
    """Train, measure on held-out prompts, and certify (raises :class:`IITTargetNotReached` below the target)."""
    tokenizer = tokenizer if tokenizer is not None else build_tokenizer()
    model, log = fit(cfg, tokenizer, progress)
    acc = accuracies(model, cfg, tokenizer)
    certify(acc, cfg.target_accuracy)
    graph = Graph.of(model)
    card = {"how": "strict interchange-intervention training (Gupta et al. 2024 InterpBench; Geiger et al. 2022): "
                   "DUP (S2) -> SINH (END) -> NM (END); mechrepro.groundtruth.planted_ioi",
            "planted_heads": {v: list(h) for v, h in cfg.heads.items()},
            "iit_accuracy": acc["iit_accuracy"], "iit_accuracy_changed": acc["iit_accuracy_changed"],
            "strict_accuracy_min": acc["strict_accuracy_min"], "strict_accuracy": acc["strict_accuracy"],
            "ioi": acc["ioi"], "target_accuracy": cfg.target_accuracy, "steps": cfg.steps, "seed": cfg.seed,
            "wall_s": round(log["wall_s"], 2), "final_losses": log["history"][-1], "template": cfg.template,
            "tokenizer": "toy (mechrepro.data.tokenizer.build_tokenizer)", "config": cfg.to_json()}
    return GroundTruth(NAME, model, edge_mask(graph, ground_truth_edges(cfg)), "patching", cfg.classes, card)


def config_of(gt: GroundTruth) -> PlantedIOIConfig:
    """The training config from a ground truth's card (e.g. after :meth:`GroundTruth.load`)."""
    c = dict(gt.card["config"])
    for v in VARIABLES:
        c[v] = tuple(c[v])
    return PlantedIOIConfig(**c)


# ---------------------------------------------------------------------------------------------
# Its task, and the paper's recipe on it.

def task_pairs(model: HookedTransformer, tokenizer=None, cfg: PlantedIOIConfig | None = None, n_prompts: int = 64,
               seed: int = 100) -> list[Pairs]:
    """Clean prompts of the model's template vs their ABC corruptions (:func:`abc_corruption`: IO, S1 and S2 all
    replaced by other names), ``answer_pos`` END, metric logit(IO) - logit(S) per prompt (as
    :func:`mechrepro.tasks.edge_discovery.ioi_pairs`, with one template: one length, no padding)."""
    tokenizer = tokenizer if tokenizer is not None else build_tokenizer()
    cfg = cfg or PlantedIOIConfig()
    clean = prompts(tokenizer, cfg, n_prompts, seed)
    abc = abc_corruption(tokenizer, clean, seed + 1, names=V.NAMES)
    if len(clean.tokens[0]) != model.cfg.n_ctx:
        raise ValueError(f"template {cfg.template} gives {len(clean.tokens[0])} tokens; the model was trained on "
                         f"{model.cfg.n_ctx} (another template?)")
    io, s = clean.io, clean.s
    end = clean.positions["end"]

    def metric(logits):  # logits [prompt 1 vocab] at END
        rows = torch.arange(len(io), device=logits.device)
        return logits[rows, -1, io.to(logits.device)] - logits[rows, -1, s.to(logits.device)]
    return [Pairs(torch.tensor(clean.tokens), torch.tensor(abc.tokens), metric, answer_pos=end)]


def ground_truth_scores(gt: GroundTruth, pairs: Pairs) -> dict[str, float]:
    """Mean exact patching score (clean vs ABC) of each ground-truth edge, by edge name."""
    g = gt.graph
    scores = exact_scores(gt.model, g, pairs).mean(0)
    labels = gt.edge_labels()
    return {g.edge_name(e): float(scores[e]) for e in range(g.n_edges) if labels[e]}


def recipe_config(cfg: PlantedIOIConfig, n_prompts: int = 64, seed: int = 100, **thresholds) -> IOIConfig:
    """The IOI config the paper's recipe (:func:`mechrepro.tasks.ioi_circuit.discover`) runs with on the planted
    model: its one template, the toy vocabulary, and the thresholds of ``workflow/config/toy.yaml`` (override by
    keyword)."""
    th = {"direct_threshold": 0.05, "path_threshold": 0.05, "attention_threshold": 0.2, "copy_threshold": 0.5,
          "copy_top_k": 5, "n_random_k": 20, "greedy_k": 3, **thresholds}
    return IOIConfig(model=NAME, n_prompts=n_prompts, vocabulary="toy",
                     exclude_templates=tuple(t for t in _TEMPLATES if t != cfg.template), seed=seed, **th)


def recipe_classes(gt: GroundTruth, tokenizer=None, ioi_cfg: IOIConfig | None = None) -> dict:
    """Run Wang et al.'s backwards path-patching recipe on the planted model: {"classes": class -> heads found,
    "stopped": why the search stopped early (or None), "found": discover()'s full result}."""
    from mechrepro.tasks.ioi_circuit import CLASSES, discover

    tokenizer = tokenizer if tokenizer is not None else build_tokenizer()
    cfg = config_of(gt)
    ioi_cfg = ioi_cfg or recipe_config(cfg)
    clean = prompts(tokenizer, cfg, ioi_cfg.n_prompts, ioi_cfg.seed)
    abc = abc_corruption(tokenizer, clean, ioi_cfg.seed + 1, names=V.NAMES)
    groups = group_prompts(clean, abc)
    name_ids = torch.tensor([single_token_id(tokenizer, " " + n) for n in V.NAMES])
    found = discover(gt.model, groups, name_ids, ioi_cfg)
    roles = found["circuit"].roles
    return {"classes": {c: [tuple(h) for h in roles[c]] for c in CLASSES}, "stopped": found["stopped"],
            "found": found}


def class_scores(found: dict[str, list], planted: dict[str, list]) -> dict[str, dict]:
    """Per planted class: precision and recall of the heads found in that class (None where undefined)."""
    out = {}
    for cls, heads in planted.items():
        f, p = set(map(tuple, found.get(cls, []))), set(map(tuple, heads))
        out[cls] = {"found": sorted(f), "precision": len(f & p) / len(f) if f else None,
                    "recall": len(f & p) / len(p) if p else None}
    return out


__all__ = ["CLASS_OF", "IITTargetNotReached", "NAME", "PlantedIOIConfig", "VARIABLES", "accuracies",
           "certify", "class_scores", "config_of", "counterfactual", "fit", "ground_truth_edges",
           "ground_truth_scores", "make_model", "prompts", "recipe_classes", "recipe_config", "task_pairs", "train"]
