"""Finding the Greater-Than circuit as Hanna et al. 2023 (*How does GPT-2 compute greater-than?*, §3) did.

Path patching from the "01" dataset (start year YY -> 01) into the clean run, with heads *and* MLPs as
senders (effects relative to the clean probability difference):

1. to the logits, senders at the last position (END): the components whose direct effect matters;
2. to the inputs of the MLPs found at END, senders at END, repeated for every newly found MLP (Hanna et al.
   path-patch to MLP 11, then 10, 9, 8): the heads and earlier MLPs that feed them;
3. to the keys and values of the heads found at END, senders at the start year's YY position; then to the
   inputs of the MLPs found at YY, again until no new MLP appears (the paper's MLPs 0-3 and heads at YY).

A component belongs to the circuit when |effect| >= the config's threshold. The circuit is then evaluated
the way the paper evaluates its own (§3.3, Fig. 5): the circuit's components see the clean input, every
other component the 01 input -- here node by node: each head or MLP output outside the circuit (and a
circuit component's output away from its position, under the paper protocol) is replaced by its value on
the prompt's 01 counterpart. Also: each head's attention from END to YY, and each MLP's direct
contribution to every year's logit (the logit lens of its END output), per start year, as in §4.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from transformer_lens import HookedTransformer, utils

from mechrepro.tasks.greater_than import (
    START_YYS,
    GreaterThanConfig,
    YearDataset,
    _prob_diff,
    cutoff_sharpness,
    heatmap,
    year_dataset,
)
from mechrepro.techniques.ablation import ablate_masks
from mechrepro.techniques.path_patching import MLP, path_patch

Component = tuple[int, int | str]  # (layer, head) or (layer, "mlp")
PAPER_CITATION = ("Hanna, Liu & Variengien 2023, How does GPT-2 compute greater-than? (arXiv 2305.00586), §3 and "
                  "Fig. 5; canonical set: Conmy et al. 2023 (ACDC) and auto-circuit's Greater-Than task")


@dataclass(frozen=True)
class GTCircuit:
    """Components kept at the last position (``end``) and at the start year's two-digit position (``yy``)."""

    end: tuple[Component, ...]
    yy: tuple[Component, ...]

    @property
    def components(self) -> list[tuple[str, Component]]:
        return [("end", c) for c in self.end] + [("yy", c) for c in self.yy]

    def check(self, model: HookedTransformer) -> None:
        for where, (layer, what) in self.components:
            if not 0 <= layer < model.cfg.n_layers or (what != MLP and not 0 <= what < model.cfg.n_heads):
                raise ValueError(f"circuit component {name((layer, what))} at {where} is outside this model "
                                 f"({model.cfg.n_layers} layers x {model.cfg.n_heads} heads)")
            if what == MLP and model.cfg.attn_only:
                raise ValueError("the circuit has MLPs; this model is attention-only")

    def to_json(self) -> dict:
        return {"end": [name(c) for c in self.end], "yy": [name(c) for c in self.yy]}


# Hanna et al. §3 (Fig. 5): heads 5.1, 5.5, 6.9, 7.10, 8.8, 8.11, 9.1 and MLPs 8-11 at END; MLPs 0-3 and
# heads 0.1, 0.3, 0.5 at YY.
PAPER_CIRCUIT = GTCircuit(
    end=((5, 1), (5, 5), (6, 9), (7, 10), (8, 8), (8, 11), (9, 1), (8, MLP), (9, MLP), (10, MLP), (11, MLP)),
    yy=((0, 1), (0, 3), (0, 5), (0, MLP), (1, MLP), (2, MLP), (3, MLP)))
# The set ACDC (Conmy et al. 2023) and auto-circuit use as Greater-Than's canonical heads.
CANONICAL_HEADS = ((5, 5), (6, 1), (6, 9), (7, 10), (8, 11), (9, 1))
PROTOCOLS = {
    "paper": "the circuit's heads and MLPs keep their clean output at their own position (END or YY); every other "
             "head and MLP output, at every position, and the circuit's elsewhere, is taken from the prompt's 01 "
             "counterpart (Hanna et al. §3.3: the circuit sees the clean input, the rest the 01 input; node-level)",
    "all_positions": "the circuit's heads and MLPs keep their clean output at every position; every other head "
                     "and MLP output is taken from the prompt's 01 counterpart",
}


def name(c: Component) -> str:
    layer, what = c
    return f"MLP {layer}" if what == MLP else f"{layer}.{what}"


def parse(text: str) -> Component:
    if text.startswith("MLP "):
        return int(text[4:]), MLP
    layer, head = text.split(".")
    return int(layer), int(head)


def _components(table: Tensor, threshold: float) -> list[Component]:
    """Components whose |relative effect| in a [layer, head + 1] table (last column: the MLP) reaches ``threshold``."""
    n_heads = table.shape[1] - 1
    return [(int(la), MLP if int(h) == n_heads else int(h)) for la, h in (table.abs() >= threshold).nonzero()]


def _order(c: Component) -> tuple[int, int]:
    """Layer by layer, the heads before the layer's MLP."""
    return c[0], 10**6 if c[1] == MLP else c[1]


def discover(model: HookedTransformer, ds: YearDataset, cfg: GreaterThanConfig) -> dict:
    """The search of the module docstring. Returns the circuit, the clean probability difference and every
    step's [layer, head + 1] table of relative effects (keyed by what the senders were patched into)."""
    with torch.inference_mode():
        base = float(ds.metric(model(ds.clean.to(model.cfg.device))))
    if not np.isfinite(base) or abs(base) < 1e-6:
        raise ValueError(f"the model's probability difference is {base}: relative effects are undefined")

    def step(receivers, role: str) -> Tensor:
        table = path_patch(model, ds.metric, ds.clean, ds.corrupted, receivers, sender_positions=[ds.positions[role]],
                           last_position_only=True, mlp_senders=True)
        return (table - base) / base

    steps: dict[str, Tensor] = {"logits": step("logits", "end")}
    found = {"end": _components(steps["logits"], cfg.direct_threshold), "yy": []}

    def grow(role: str) -> None:  # path patching to each newly found MLP's input, until no new MLP appears
        done: set[int] = set()
        while todo := sorted({la for la, w in found[role] if w == MLP} - done):
            done |= set(todo)
            key = f"{role}_mlps_" + "_".join(map(str, todo))
            steps[key] = step([(la, MLP) for la in todo], role)
            found[role] += [c for c in _components(steps[key], cfg.path_threshold) if c not in found[role]]

    grow("end")
    heads = [c for c in found["end"] if c[1] != MLP]
    stopped = None
    if heads:
        steps["end_heads_kv"] = step([(la, h, k) for la, h in heads for k in ("k", "v")], "yy")
        found["yy"] = _components(steps["end_heads_kv"], cfg.path_threshold)
        grow("yy")
    else:
        stopped = "no heads at END: nothing reads the start year, so the search stops before the YY position"
    circuit = GTCircuit(tuple(sorted(found["end"], key=_order)), tuple(sorted(found["yy"], key=_order)))
    return {"circuit": circuit, "steps": steps, "prob_diff": base, "stopped": stopped}


def keep_masks(model: HookedTransformer, circuit: GTCircuit, positions: dict[str, int], n_pos: int, protocol: str
               ) -> tuple[Tensor, Tensor]:
    """([layer pos head], [layer pos]) True where a head's / an MLP's clean output is kept."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {list(PROTOCOLS)}, got {protocol!r}")
    circuit.check(model)
    c = model.cfg
    heads = torch.zeros(c.n_layers, n_pos, c.n_heads, dtype=torch.bool)
    mlps = torch.zeros(c.n_layers, n_pos, dtype=torch.bool)
    for role, (layer, what) in circuit.components:
        at = slice(None) if protocol == "all_positions" else positions[role]
        if what == MLP:
            mlps[layer, at] = True
        else:
            heads[layer, at, what] = True
    return heads, mlps


@torch.inference_mode()
def evaluate_circuits(model: HookedTransformer, ds: YearDataset, circuits: dict[str, tuple[GTCircuit | None, str]]
                      ) -> dict[str, Tensor]:
    """Year probabilities [prompt 100] of the model restricted to each circuit: name -> (circuit, protocol);
    a circuit None keeps everything (the full model). Outside the circuit, outputs come from the 01 prompts."""
    c = model.cfg
    names = [utils.get_act_name("z", la) for la in range(c.n_layers)]
    names += [] if c.attn_only else [utils.get_act_name("mlp_out", la) for la in range(c.n_layers)]
    _, corr = model.run_with_cache(ds.corrupted.to(c.device), names_filter=lambda n: n in names)
    z = torch.stack([corr[utils.get_act_name("z", la)] for la in range(c.n_layers)], dim=1)  # [b layer pos head d]
    mlp = None if c.attn_only else torch.stack([corr[utils.get_act_name("mlp_out", la)] for la in range(c.n_layers)],
                                               dim=1)  # [b layer pos d_model]
    n_pos = ds.clean.shape[1]
    head_masks, mlp_masks = [], []
    for circuit, protocol in circuits.values():
        if circuit is None:
            keep = (torch.ones(c.n_layers, n_pos, c.n_heads, dtype=torch.bool),
                    torch.ones(c.n_layers, n_pos, dtype=torch.bool))
        else:
            keep = keep_masks(model, circuit, ds.positions, n_pos, protocol)
        head_masks.append(~keep[0])
        mlp_masks.append(~keep[1])
    probs = ablate_masks(model, ds.clean.to(c.device), torch.stack(head_masks), ds.probs, replacement=z,
                         mlp_masks=None if c.attn_only else torch.stack(mlp_masks), mlp_replacement=mlp)
    return dict(zip(circuits, probs, strict=True))


@torch.inference_mode()
def clean_cache(model: HookedTransformer, ds: YearDataset):
    """One clean run keeping what :func:`attention_to_yy` and :func:`mlp_year_logits` read."""
    c = model.cfg
    names = {utils.get_act_name("pattern", la) for la in range(c.n_layers)} | {"ln_final.hook_scale"}
    names |= set() if c.attn_only else {utils.get_act_name("mlp_out", la) for la in range(c.n_layers)}
    return model.run_with_cache(ds.clean.to(c.device), names_filter=lambda n: n in names)[1]


def attention_to_yy(model: HookedTransformer, ds: YearDataset, cache) -> Tensor:
    """[layer head] mean attention from END to the start year's YY token on the clean prompts."""
    names = [utils.get_act_name("pattern", la) for la in range(model.cfg.n_layers)]
    return torch.stack([cache[n][:, :, ds.positions["end"], ds.positions["yy"]].mean(0) for n in names]).cpu()


@torch.inference_mode()
def mlp_year_logits(model: HookedTransformer, ds: YearDataset, cache) -> Tensor:
    """[layer prompt 100] each MLP's direct contribution to the logits of "00".."99" at END (its output divided
    by the final LayerNorm's scale, unembedded: the paper's logit lens of §4), centred over the 100 years."""
    c = model.cfg
    names = [utils.get_act_name("mlp_out", la) for la in range(c.n_layers)]
    end = ds.positions["end"]
    scale = cache["ln_final.hook_scale"][:, end] if c.normalization_type is not None else 1.0
    out = torch.stack([(cache[names[la]][:, end] / scale) @ model.W_U[:, ds.yy_ids.to(c.device)]
                       for la in range(c.n_layers)]).float().cpu()
    return out - out.mean(-1, keepdim=True)


def later_fraction(year_map: Tensor) -> float:
    """Fraction of start years YY (rows of a [97, 100] heatmap) whose mean value over later years y > YY
    exceeds the mean over y <= YY: "up-weights later years" (Hanna et al. §4, Fig. 7)."""
    rows = [i for i in range(len(START_YYS)) if torch.isfinite(year_map[i]).all()]
    if not rows:
        return float("nan")
    later = [float(year_map[i, START_YYS[i] + 1:].mean() - year_map[i, :START_YYS[i] + 1].mean()) > 0 for i in rows]
    return float(np.mean(later))


def overlap(ours: GTCircuit, paper: GTCircuit) -> dict[str, float | None]:
    """Precision and recall of our END heads, END MLPs and YY components against the paper's, and of all our
    heads against the canonical set (None: undefined, an empty set)."""
    def pr(mine: set, theirs: set, key: str) -> dict:
        return {f"precision.{key}": len(mine & theirs) / len(mine) if mine else None,
                f"recall.{key}": len(mine & theirs) / len(theirs) if theirs else None}
    def heads(cs) -> set:
        return {c for c in cs if c[1] != MLP}

    def mlps(cs) -> set:
        return {c for c in cs if c[1] == MLP}
    return {**pr(heads(ours.end), heads(paper.end), "end_heads"), **pr(mlps(ours.end), mlps(paper.end), "end_mlps"),
            **pr(set(ours.yy), set(paper.yy), "yy"),
            **pr(heads(ours.end) | heads(ours.yy), set(CANONICAL_HEADS), "canonical_heads")}


def run_analysis(model: HookedTransformer, cfg: GreaterThanConfig, paper_circuit: bool) -> dict:
    """Everything the Greater-Than report shows: dataset, metrics, discovery, the circuit's faithfulness and
    heatmaps, attention to YY and the MLPs' year contributions (and Hanna et al.'s own circuit, when asked and
    the model is GPT-2-small-shaped)."""
    t0 = time.perf_counter()

    def stage(what: str) -> None:  # progress in the job's log
        print(f"[greater_than {time.perf_counter() - t0:7.1f} s] {what}", flush=True)

    ds = year_dataset(model.tokenizer, cfg)
    stage(f"{len(ds.texts)} prompts; path patching backwards from the logits")
    found = discover(model, ds, cfg)
    circuit: GTCircuit = found["circuit"]
    stage(f"circuit: {circuit.to_json()}; evaluating it")
    sets: dict[str, tuple[GTCircuit | None, str]] = {"model": (None, "paper"), "empty": (GTCircuit((), ()), "paper"),
                                                     "discovered": (circuit, "paper"),
                                                     "discovered_all_positions": (circuit, "all_positions")}
    gpt2_shaped = (model.cfg.n_layers, model.cfg.n_heads) == (12, 12) and not model.cfg.attn_only
    if paper_circuit and gpt2_shaped:
        sets["paper_circuit"] = (PAPER_CIRCUIT, "paper")
    probs = evaluate_circuits(model, ds, sets)
    pd = {k: float(_prob_diff(p, ds.start_yy).mean()) for k, p in probs.items()}
    sharp = {k: float(cutoff_sharpness(p, ds.start_yy).mean()) for k, p in probs.items()}
    full = pd["model"]
    stage("attention to YY and the MLPs' year logits")
    cache = clean_cache(model, ds)
    attn = attention_to_yy(model, ds, cache)
    mlp_maps = [] if model.cfg.attn_only else [heatmap(m, ds.start_yy) for m in mlp_year_logits(model, ds, cache)]
    fractions = [later_fraction(m) for m in mlp_maps]
    circuit_mlps = [la for la, w in circuit.end if w == MLP]
    best = max(circuit_mlps, key=lambda la: fractions[la]) if circuit_mlps else None
    summary = {
        "prob_diff": full, "cutoff_sharpness": sharp["model"], "corrupted_prob_diff": pd["empty"],
        "n_prompts": len(ds.texts), "stopped": found["stopped"],
        "discovered.n_components": len(circuit.components),
        "discovered.n_heads": sum(w != MLP for _, (_, w) in circuit.components),
        "discovered.n_mlps": sum(w == MLP for _, (_, w) in circuit.components),
        "discovered.prob_diff": pd["discovered"], "discovered.cutoff_sharpness": sharp["discovered"],
        "discovered.faithfulness": pd["discovered"] / full,
        "discovered.faithfulness_all_positions": pd["discovered_all_positions"] / full,
        # no MLP at END in the circuit: nothing up-weights later years (0, so that the claim fails, not "not run")
        "discovered.best_mlp_later_fraction": fractions[best] if best is not None else 0.0,
        "discovered.best_mlp": best if best is not None else -1,
    }
    if "paper_circuit" in pd:
        summary["paper_circuit.prob_diff"] = pd["paper_circuit"]
        summary["paper_circuit.faithfulness"] = pd["paper_circuit"] / full
    if gpt2_shaped:
        summary.update(overlap(circuit, PAPER_CIRCUIT))
    validation = [{"circuit": k, "protocol": proto, "protocol_text": PROTOCOLS[proto], "prob_diff": pd[k],
                   "cutoff_sharpness": sharp[k], "faithfulness": pd[k] / full,
                   "n_components": None if c is None else len(c.components)} for k, (c, proto) in sets.items()]
    stage("done")
    return {"summary": summary, "circuit": circuit, "steps": found["steps"], "validation": validation,
            "heatmaps": {k: heatmap(p, ds.start_yy) for k, p in probs.items()},
            "mlp_maps": mlp_maps, "mlp_later_fraction": fractions, "attention_to_yy": attn,
            "examples": [{"text": t, "corrupted": c, "start_yy": int(y)} for t, c, y in
                         list(zip(ds.texts, ds.corrupted_texts, ds.start_yy, strict=True))[:8]]}
