"""One circuit type for every paper, and its validation: faithfulness, completeness, minimality and overlap.

A :class:`Circuit` is a set of parts -- attention heads ``(layer, head)`` and MLPs ``(layer, "mlp")`` -- grouped
by the role they play, each role acting at one named position of the prompts (optionally with the graph edges
between them, which this module carries but does not read). Both papers' circuits are values of it:

* Wang et al. 2022, *Interpretability in the Wild* (IOI, §3 Fig. 2): heads by class (name movers, S-inhibition,
  ...), each class acting at END, S2 or S1+1 (their code's SEQ_POS_TO_KEEP);
* Hanna et al. 2023, *How does GPT-2 compute greater-than?* (§3, Fig. 5): heads and MLPs at END and at the start
  year's YY position.

F(C) is the metric of the model in which every output *outside* C is replaced by a value from corrupted prompts
(:class:`Ablation`: Wang et al. take each head's mean over the ABC prompts of the same template, per position;
Hanna et al. the prompt's own 01 counterpart, for heads and MLPs alike); F(M) is the metric of the whole model.
Following Wang et al. §4:

* faithfulness: F(C) / F(M);
* completeness: for subsets K of C, |F(C \\ K) - F(M \\ K)| should stay small (random and greedily chosen K);
* minimality: for each part v of C, some K with |F(C \\ (K ∪ {v})) - F(C \\ K)| large.

Miller et al. 2024 (*Transformer Circuit Faithfulness Metrics are not Robust*) showed that the ablation
protocol alone -- which mean, which positions -- moves IOI faithfulness from under 0% to over 100%, so each
number here is returned with the text of the protocol that produced it (each paper words its own).

The prompt groups are duck-typed: any object with ``clean`` / ``corrupted`` token tensors [n pos] of one
length, ``positions`` (position name -> index) and ``metric(logits) -> scalar`` (a mean over its prompts).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from jaxtyping import Bool
from torch import Tensor
from transformer_lens import HookedTransformer, utils

from mechrepro.techniques.ablation import ablate_masks
from mechrepro.techniques.path_patching import MLP

Part = tuple[int, int | str]  # (layer, head) or (layer, "mlp")

# "paper": each part kept only at its role's position (Wang et al.'s SEQ_POS_TO_KEEP; Hanna et al.'s END / YY);
# "all_positions": each part kept at every position. Each paper's Ablation words what both ablate.
PROTOCOLS = ("paper", "all_positions")


def name(part: Part) -> str:
    """Readable name of a part: "3.2" (layer 3, head 2) or "MLP 5"."""
    layer, what = part
    return f"MLP {layer}" if what == MLP else f"{layer}.{what}"


def parse(text: str) -> Part:
    """The part a :func:`name` names."""
    try:
        if text.startswith("MLP "):
            return int(text[4:]), MLP
        layer, head = text.split(".")
        return int(layer), int(head)
    except ValueError:
        raise ValueError(f"not a circuit part: {text!r} (a head is 'layer.head', an MLP 'MLP layer')") from None


def part_order(part: Part) -> tuple[int, int]:
    """Layer by layer, the heads before the layer's MLP (the order in which a forward pass computes them)."""
    return part[0], 10**6 if part[1] == MLP else int(part[1])


def _part(role: str, p) -> Part:
    """``p`` as a part with Python ints, or a ValueError naming it."""
    try:
        layer, what = p
        if what != MLP:
            what = int(what)
            if isinstance(p[1], str | float) or what < 0:
                raise ValueError
        if int(layer) != layer or int(layer) < 0:
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"circuit role {role!r}: {p!r} is not a part (layer, head) or (layer, {MLP!r})") from None
    return int(layer), what


def _tuples(x):
    """Nested lists (as JSON gives them back) as nested tuples, so that edges compare and hash."""
    return tuple(_tuples(v) for v in x) if isinstance(x, list | tuple) else x


def _lists(x):
    return [_lists(v) for v in x] if isinstance(x, list | tuple) else x


@dataclass(frozen=True)
class Circuit:
    """Parts by role, the position (a key of the prompt groups' ``positions``) at which each role acts, and
    optional graph edges (carried as given: the edge-level code that writes them also reads them).

    A part may play several roles (Greater-Than: an MLP at END and at YY); it is then kept at each role's
    position, and removing it from the circuit removes it everywhere."""

    roles: dict[str, tuple[Part, ...]]
    positions: dict[str, str]
    edges: tuple = ()

    def __post_init__(self):
        roles = {role: tuple(_part(role, p) for p in parts) for role, parts in self.roles.items()}
        object.__setattr__(self, "roles", roles)
        object.__setattr__(self, "positions", dict(self.positions))
        object.__setattr__(self, "edges", _tuples(self.edges))

    @property
    def parts(self) -> list[Part]:
        """Every part once, layer by layer (heads before the layer's MLP)."""
        return sorted({p for ps in self.roles.values() for p in ps}, key=part_order)

    @property
    def heads(self) -> list[Part]:
        return [p for p in self.parts if p[1] != MLP]

    @property
    def mlps(self) -> list[Part]:
        return [p for p in self.parts if p[1] == MLP]

    def role_of(self, part: Part) -> str:
        """The first role (in the circuit's order) that ``part`` plays."""
        role = next((r for r, ps in self.roles.items() if part in ps), None)
        if role is None:
            raise ValueError(f"{name(part)} is not in this circuit")
        return role

    def check(self, model: HookedTransformer) -> None:
        """Raise a clear error when the circuit cannot be evaluated on ``model``."""
        c = model.cfg
        for role, parts in self.roles.items():
            if parts and role not in self.positions:
                raise ValueError(f"circuit role {role!r} has no position to act at")
            for layer, what in parts:
                if layer >= c.n_layers or (what != MLP and what >= c.n_heads):
                    raise ValueError(f"circuit part {name((layer, what))} ({role}) is outside this model "
                                     f"({c.n_layers} layers x {c.n_heads} heads)")
                if what == MLP and c.attn_only:
                    raise ValueError(f"circuit part {name((layer, what))} ({role}) is an MLP; this model is "
                                     f"attention-only")

    def to_json(self) -> dict:
        return {"roles": {r: [name(p) for p in ps] for r, ps in self.roles.items()},
                "positions": dict(self.positions), "edges": _lists(self.edges)}

    @classmethod
    def from_json(cls, d: dict) -> Circuit:
        return cls({r: tuple(parse(n) for n in ps) for r, ps in d["roles"].items()}, dict(d.get("positions", {})),
                   _tuples(d.get("edges", [])))


@dataclass(frozen=True)
class Ablation:
    """How a paper evaluates a circuit: what replaces an output outside it, whether MLPs are parts that can be
    outside it, and the paper's wording of each protocol of :data:`PROTOCOLS` (recorded with every number)."""

    source: str  # "mean": each group's mean over its corrupted prompts, per position; "counterpart": each
    # prompt's own corrupted prompt
    mlps: bool  # True: MLP outputs outside the circuit are replaced too; False: every MLP is always kept
    protocols: dict[str, str]

    def __post_init__(self):
        if self.source not in ("mean", "counterpart"):
            raise ValueError(f"ablation source must be 'mean' or 'counterpart', got {self.source!r}")
        if set(self.protocols) != set(PROTOCOLS):
            raise ValueError(f"an ablation words each protocol of {list(PROTOCOLS)}, got {sorted(self.protocols)}")


class Keep(NamedTuple):
    """Where outputs are kept (True) rather than replaced."""

    heads: Bool[Tensor, "layer pos head"]
    mlps: Bool[Tensor, "layer pos"]


def keep_masks(model: HookedTransformer, circuit: Circuit, positions: dict[str, int], n_pos: int, protocol: str,
               removed: Iterable[Part] = ()) -> Keep:
    """Keep-masks of the circuit minus ``removed`` under ``protocol`` (see :data:`PROTOCOLS`)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {list(PROTOCOLS)}, got {protocol!r}")
    circuit.check(model)
    removed = set(removed)
    c = model.cfg
    keep = Keep(torch.zeros(c.n_layers, n_pos, c.n_heads, dtype=torch.bool),
                torch.zeros(c.n_layers, n_pos, dtype=torch.bool))
    for role, parts in circuit.roles.items():
        for layer, what in parts:
            if (layer, what) in removed:
                continue
            if protocol == "all_positions":
                at = slice(None)
            elif circuit.positions[role] in positions:
                at = positions[circuit.positions[role]]
            else:
                raise ValueError(f"circuit role {role!r} acts at {circuit.positions[role]!r}, which these prompts "
                                 f"do not mark (they mark {sorted(positions)})")
            if what == MLP:
                keep.mlps[layer, at] = True
            else:
                keep.heads[layer, at, what] = True
    return keep


def model_minus(model: HookedTransformer, n_pos: int, removed: Iterable[Part]) -> Keep:
    """Keep-masks of the whole model with ``removed`` parts replaced at every position."""
    c = model.cfg
    keep = Keep(torch.ones(c.n_layers, n_pos, c.n_heads, dtype=torch.bool),
                torch.ones(c.n_layers, n_pos, dtype=torch.bool))
    for layer, what in removed:
        if what == MLP:
            keep.mlps[layer] = False
        else:
            keep.heads[layer, :, what] = False
    return keep


@torch.inference_mode()
def _source(model: HookedTransformer, corrupted: Tensor, source: str, mlps: bool) -> tuple[Tensor, Tensor | None]:
    """What replaces head outputs z and MLP outputs: [layer pos head d_head] and [layer pos d_model] means over the
    corrupted prompts, or [batch layer pos ...] per prompt ("counterpart")."""
    c = model.cfg
    kinds = ("z", "mlp_out") if mlps else ("z",)
    names = {utils.get_act_name(k, la) for k in kinds for la in range(c.n_layers)}
    _, cache = model.run_with_cache(corrupted.to(c.device), names_filter=lambda n: n in names, return_type=None)

    def stacked(kind: str) -> Tensor:
        acts = [cache[utils.get_act_name(kind, la)] for la in range(c.n_layers)]
        return torch.stack([a.mean(0) for a in acts]) if source == "mean" else torch.stack(acts, dim=1)
    return stacked("z"), stacked("mlp_out") if mlps else None


class Evaluator:
    """F(keep-masks) over prompt groups under one :class:`Ablation`, its replacement values computed once per
    group; F is prompt-weighted over the groups."""

    def __init__(self, model: HookedTransformer, groups: Sequence, ablation: Ablation):
        self.model, self.groups, self.ablation = model, list(groups), ablation
        self.mlps = ablation.mlps and not model.cfg.attn_only  # MLP outputs are replaced outside the circuit
        self.sources = [_source(model, g.corrupted, ablation.source, self.mlps) for g in self.groups]
        self.weights = np.array([len(g.clean) for g in self.groups], dtype=float)
        self.weights /= self.weights.sum()
        self.full = self.metric(self.without(()))  # F(M)
        if not np.isfinite(self.full) or self.full == 0:
            raise ValueError(f"the model's metric F(M) is {self.full}: faithfulness is undefined")

    def outputs(self, keep_fns: Sequence, fn=None) -> list[list[Tensor]]:
        """[group][keep_fn]: ``fn(logits)`` (default: the group's metric) with outputs replaced wherever
        ``keep_fn(group)`` does not keep them."""
        out = []
        for g, (heads, mlps) in zip(self.groups, self.sources, strict=True):
            keeps = [k(g) for k in keep_fns]
            out.append(ablate_masks(self.model, g.clean, torch.stack([~k.heads for k in keeps]), fn or g.metric,
                                    replacement=heads, mlp_replacement=mlps,
                                    mlp_masks=torch.stack([~k.mlps for k in keeps]) if self.mlps else None))
        return out

    def metrics(self, keep_fns: Sequence) -> np.ndarray:
        """F for each ``keep_fn(group) -> Keep``, prompt-weighted over the groups."""
        out = np.zeros(len(keep_fns))
        for w, vals in zip(self.weights, self.outputs(keep_fns), strict=True):
            out += w * np.array([float(v) for v in vals])
        if not np.isfinite(out).all():
            raise ValueError("the metric of an ablated model is NaN or inf")
        return out

    def metric(self, keep_fn) -> float:
        return float(self.metrics([keep_fn])[0])

    def circuit(self, circuit: Circuit, protocol: str, removed: Iterable[Part] = ()):
        """The keep-mask function of ``circuit`` minus ``removed`` under ``protocol``."""
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {list(PROTOCOLS)}, got {protocol!r}")
        circuit.check(self.model)
        if circuit.mlps and not self.mlps:
            raise ValueError(f"the circuit has MLPs ({', '.join(map(name, circuit.mlps))}), but this evaluation keeps "
                             f"every MLP: MLPs are not parts a circuit can leave out here")
        removed = tuple(removed)
        return lambda g: keep_masks(self.model, circuit, g.positions, g.clean.shape[1], protocol, removed)

    def without(self, removed: Iterable[Part]):
        """The keep-mask function of the whole model minus ``removed``."""
        removed = tuple(removed)
        return lambda g: model_minus(self.model, g.clean.shape[1], removed)


def faithfulness(ev: Evaluator, circuit: Circuit, protocol: str) -> dict:
    f_c = ev.metric(ev.circuit(circuit, protocol))
    return {"protocol": protocol, "protocol_text": ev.ablation.protocols[protocol], "F_C": f_c, "F_M": ev.full,
            "faithfulness": f_c / ev.full, "n_heads": len(circuit.heads), "n_mlps": len(circuit.mlps)}


def completeness(ev: Evaluator, circuit: Circuit, protocol: str, n_random: int, greedy_k: int, seed: int
                 ) -> list[dict]:
    """Rows (kind, role, K, F(C\\K), F(M\\K), incompleteness |F(C\\K) - F(M\\K)| / F(M)) for: the empty set, each
    whole role (kind "role"), ``n_random`` random subsets (each part kept with probability 1/2), and a greedy K
    grown one part at a time (up to ``greedy_k``) to maximise the incompleteness (Wang et al. §4.2)."""
    parts = circuit.parts
    rng = np.random.default_rng(seed)
    sets: list[tuple[str, str, tuple[Part, ...]]] = [("empty", "", ())]
    sets += [("role", r, tuple(ps)) for r, ps in circuit.roles.items() if ps]
    for _ in range(n_random):
        sets.append(("random", "", tuple(p for p in parts if rng.random() < 0.5)))
    rows = _completeness_rows(ev, circuit, protocol, sets)
    chosen: tuple[Part, ...] = ()
    for _ in range(min(greedy_k, len(parts))):
        candidates = [chosen + (p,) for p in parts if p not in chosen]
        trial = _completeness_rows(ev, circuit, protocol, [("greedy", "", k) for k in candidates])
        i = int(np.argmax([r["incompleteness"] for r in trial]))
        rows.append(trial[i])
        chosen = candidates[i]
    return rows


def _completeness_rows(ev: Evaluator, circuit: Circuit, protocol: str, sets) -> list[dict]:
    f_c = ev.metrics([ev.circuit(circuit, protocol, k) for _, _, k in sets])
    f_m = ev.metrics([ev.without(k) for _, _, k in sets])
    return [{"kind": kind, "role": role, "K": ", ".join(map(name, k)), "size": len(k), "F_C_minus_K": fc,
             "F_M_minus_K": fm, "incompleteness": abs(fc - fm) / abs(ev.full)}
            for (kind, role, k), fc, fm in zip(sets, f_c, f_m, strict=True)]


def minimality(ev: Evaluator, circuit: Circuit, protocol: str) -> list[dict]:
    """For each part v of the circuit: |F(C \\ (K ∪ {v})) - F(C \\ K)| / F(M) for K empty and for K = the other
    parts of v's role (Wang et al. choose K per class by hand, Table 2); the larger is v's score."""
    sets = []
    for v in circuit.parts:
        others = tuple(p for p in circuit.roles[circuit.role_of(v)] if p != v)
        for k in ((), others) if others else ((),):
            sets.append((v, k))
    with_v = ev.metrics([ev.circuit(circuit, protocol, k + (v,)) for v, k in sets])
    without_v = ev.metrics([ev.circuit(circuit, protocol, k) for v, k in sets])
    best: dict[Part, dict] = {}
    for (v, k), a, b in zip(sets, with_v, without_v, strict=True):
        score = abs(a - b) / abs(ev.full)
        if v not in best or score > best[v]["minimality"]:
            best[v] = {"part": name(v), "role": circuit.role_of(v), "K": ", ".join(map(name, k)),
                       "F_C_minus_K": b, "F_C_minus_K_and_v": a, "minimality": score}
    return [best[v] for v in circuit.parts]


def overlap(ours: Circuit, reference: Circuit, roles: Sequence[str] | None = None) -> dict[str, float | None]:
    """Precision and recall of our parts against a reference circuit's (None where undefined: an empty set).

    Keys ``precision.heads`` / ``recall.heads`` and ``precision.mlps`` / ``recall.mlps``, over every part, or with
    ``roles`` over the parts of those roles only; then for each of ``roles``: ``precision.<role>`` /
    ``recall.<role>`` (its heads and MLPs together), ``<role>_heads`` and ``<role>_mlps``."""
    def select(c: Circuit, rs) -> set[Part]:
        return {p for r in rs for p in c.roles.get(r, ())}

    def pr(mine: set, theirs: set, key: str) -> dict:
        return {f"precision.{key}": len(mine & theirs) / len(mine) if mine else None,
                f"recall.{key}": len(mine & theirs) / len(theirs) if theirs else None}

    def split(mine: set, theirs: set, prefix: str) -> dict:
        heads = [{p for p in s if p[1] != MLP} for s in (mine, theirs)]
        mlps = [{p for p in s if p[1] == MLP} for s in (mine, theirs)]
        return {**pr(*heads, prefix + "heads"), **pr(*mlps, prefix + "mlps")}

    scope = list(roles) if roles is not None else sorted(set(ours.roles) | set(reference.roles))
    out = split(select(ours, scope), select(reference, scope), "")
    for r in roles or ():
        mine, theirs = select(ours, [r]), select(reference, [r])
        out |= {**pr(mine, theirs, r), **split(mine, theirs, f"{r}_")}
    return out
