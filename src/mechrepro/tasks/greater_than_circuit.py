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
the prompt's 01 counterpart (:data:`ABLATION`, evaluated by :mod:`mechrepro.techniques.circuits`). The same code
gives its completeness and minimality (Wang et al. 2022 §4's tests; Hanna et al. do not run them). Also: each
head's attention from END to YY, and each MLP's direct contribution to every year's logit (the logit lens of its
END output), per start year, as in §4.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import Tensor
from transformer_lens import HookedTransformer, utils

from mechrepro.tasks.greater_than import (
    START_YYS,
    GreaterThanConfig,
    YearDataset,
    cutoff_sharpness,
    heatmap,
    year_dataset,
)
from mechrepro.techniques import circuits as C
from mechrepro.techniques.circuits import Circuit, Part, part_order
from mechrepro.techniques.path_patching import MLP, path_patch

PAPER_CITATION = ("Hanna, Liu & Variengien 2023, How does GPT-2 compute greater-than? (arXiv 2305.00586), §3 and "
                  "Fig. 5; canonical set: Conmy et al. 2023 (ACDC) and auto-circuit's Greater-Than task")
ROLES = ("end", "yy")  # components kept at the last position (END) and at the start year's two digits (YY)
POSITIONS = {"end": "end", "yy": "yy"}

# Hanna et al. §3 (Fig. 5): heads 5.1, 5.5, 6.9, 7.10, 8.8, 8.11, 9.1 and MLPs 8-11 at END; MLPs 0-3 and
# heads 0.1, 0.3, 0.5 at YY.
PAPER_CIRCUIT = Circuit({
    "end": ((5, 1), (5, 5), (6, 9), (7, 10), (8, 8), (8, 11), (9, 1), (8, MLP), (9, MLP), (10, MLP), (11, MLP)),
    "yy": ((0, 1), (0, 3), (0, 5), (0, MLP), (1, MLP), (2, MLP), (3, MLP))}, POSITIONS)
# The set ACDC (Conmy et al. 2023) and auto-circuit use as Greater-Than's canonical heads (edges without positions;
# all of them read YY from END).
CANONICAL_HEADS = Circuit({"end": ((5, 5), (6, 1), (6, 9), (7, 10), (8, 11), (9, 1))}, {"end": "end"})
# Hanna et al. §3.3: the circuit sees the clean input, the rest the 01 input; here node by node, heads and MLPs.
ABLATION = C.Ablation(source="counterpart", mlps=True, protocols={
    "paper": "the circuit's heads and MLPs keep their clean output at their own position (END or YY); every other "
             "head and MLP output, at every position, and the circuit's elsewhere, is taken from the prompt's 01 "
             "counterpart (Hanna et al. §3.3: the circuit sees the clean input, the rest the 01 input; node-level)",
    "all_positions": "the circuit's heads and MLPs keep their clean output at every position; every other head "
                     "and MLP output is taken from the prompt's 01 counterpart",
})


def _components(table: Tensor, threshold: float) -> list[Part]:
    """Components whose |relative effect| in a [layer, head + 1] table (last column: the MLP) reaches ``threshold``."""
    n_heads = table.shape[1] - 1
    return [(int(la), MLP if int(h) == n_heads else int(h)) for la, h in (table.abs() >= threshold).nonzero()]


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
    circuit = Circuit({r: tuple(sorted(found[r], key=part_order)) for r in ROLES}, POSITIONS)
    return {"circuit": circuit, "steps": steps, "prob_diff": base, "stopped": stopped}


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


def run_analysis(model: HookedTransformer, cfg: GreaterThanConfig, paper_circuit: bool) -> dict:
    """Everything the Greater-Than report shows: dataset, metrics, discovery, the circuit's faithfulness,
    completeness, minimality and heatmaps, attention to YY and the MLPs' year contributions (and Hanna et al.'s
    own circuit, when asked and the model is GPT-2-small-shaped)."""
    t0 = time.perf_counter()

    def stage(what: str) -> None:  # progress in the job's log
        print(f"[greater_than {time.perf_counter() - t0:7.1f} s] {what}", flush=True)

    ds = year_dataset(model.tokenizer, cfg)
    stage(f"{len(ds.texts)} prompts; path patching backwards from the logits")
    found = discover(model, ds, cfg)
    circuit: Circuit = found["circuit"]
    stage(f"circuit: {circuit.to_json()['roles']}; evaluating it")
    ev = C.Evaluator(model, [ds], ABLATION)
    sets: dict[str, tuple[Circuit, str]] = {"empty": (Circuit({}, {}), "paper"), "discovered": (circuit, "paper"),
                                            "discovered_all_positions": (circuit, "all_positions")}
    gpt2_shaped = (model.cfg.n_layers, model.cfg.n_heads) == (12, 12) and not model.cfg.attn_only
    if paper_circuit and gpt2_shaped:
        sets["paper_circuit"] = (PAPER_CIRCUIT, "paper")
    faith = {k: C.faithfulness(ev, c, protocol) for k, (c, protocol) in sets.items()}
    # the heatmaps and the cutoff sharpness need each year's probability, not just the probability difference
    keeps = {"model": ev.without(()), **{k: ev.circuit(c, protocol) for k, (c, protocol) in sets.items()}}
    probs = dict(zip(keeps, ev.outputs(list(keeps.values()), ds.probs)[0], strict=True))
    sharp = {k: float(cutoff_sharpness(p, ds.start_yy).mean()) for k, p in probs.items()}
    stage("attention to YY and the MLPs' year logits")
    cache = clean_cache(model, ds)
    attn = attention_to_yy(model, ds, cache)
    mlp_maps = [] if model.cfg.attn_only else [heatmap(m, ds.start_yy) for m in mlp_year_logits(model, ds, cache)]
    fractions = [later_fraction(m) for m in mlp_maps]
    circuit_mlps = [la for la, w in circuit.roles["end"] if w == MLP]
    best = max(circuit_mlps, key=lambda la: fractions[la]) if circuit_mlps else None
    summary = {
        "prob_diff": ev.full, "cutoff_sharpness": sharp["model"], "corrupted_prob_diff": faith["empty"]["F_C"],
        "n_prompts": len(ds.texts), "stopped": found["stopped"],
        "discovered.n_components": len(circuit.parts), "discovered.n_heads": len(circuit.heads),
        "discovered.n_mlps": len(circuit.mlps),
        "discovered.prob_diff": faith["discovered"]["F_C"], "discovered.cutoff_sharpness": sharp["discovered"],
        "discovered.faithfulness": faith["discovered"]["faithfulness"],
        "discovered.faithfulness_all_positions": faith["discovered_all_positions"]["faithfulness"],
        # no MLP at END in the circuit: nothing up-weights later years (0, so that the claim fails, not "not run")
        "discovered.best_mlp_later_fraction": fractions[best] if best is not None else 0.0,
        "discovered.best_mlp": best if best is not None else -1,
    }
    if "paper_circuit" in faith:
        summary["paper_circuit.prob_diff"] = faith["paper_circuit"]["F_C"]
        summary["paper_circuit.faithfulness"] = faith["paper_circuit"]["faithfulness"]
    completeness, minimal = [], []
    if circuit.parts:
        stage("completeness and minimality")
        completeness = C.completeness(ev, circuit, "paper", cfg.n_random_k, cfg.greedy_k, cfg.seed)
        minimal = C.minimality(ev, circuit, "paper")
        summary["discovered.max_incompleteness"] = max(r["incompleteness"] for r in completeness)
        summary["discovered.min_minimality"] = min(r["minimality"] for r in minimal)
    if gpt2_shaped:
        summary.update(C.overlap(circuit, PAPER_CIRCUIT, roles=ROLES))
        canonical = C.overlap(circuit, CANONICAL_HEADS)  # all our heads, at END or YY, against the canonical set
        summary["precision.canonical_heads"] = canonical["precision.heads"]
        summary["recall.canonical_heads"] = canonical["recall.heads"]
    validation = [{"circuit": "model", "protocol": "none", "protocol_text": "nothing is replaced: the full model",
                   "prob_diff": ev.full, "cutoff_sharpness": sharp["model"], "faithfulness": 1.0, "n_components": None}]
    validation += [{"circuit": k, **row, "prob_diff": row["F_C"], "cutoff_sharpness": sharp[k],
                    "n_components": len(sets[k][0].parts)} for k, row in faith.items()]
    stage("done")
    return {"summary": summary, "circuit": circuit, "steps": found["steps"], "validation": validation,
            "completeness": completeness, "minimality": minimal,
            "heatmaps": {k: heatmap(p, ds.start_yy) for k, p in probs.items()},
            "mlp_maps": mlp_maps, "mlp_later_fraction": fractions, "attention_to_yy": attn,
            "examples": [{"text": t, "corrupted": c, "start_yy": int(y)} for t, c, y in
                         list(zip(ds.texts, ds.corrupted_texts, ds.start_yy, strict=True))[:8]]}
