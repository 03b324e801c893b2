"""Edge-level circuit discovery scored by faithfulness curves, with a random control and a bootstrap.

The recipe of Hanna et al. 2024 (*Have Faith in Faithfulness*) and the MIB circuit track (Mueller et al. 2025):
score every edge of the model's graph (:mod:`.edges`: exact patching, EAP, EAP-IG), keep the best n edges for each
edge fraction of :data:`.faithfulness.EDGE_FRACTIONS` (:mod:`.selection`), ablate every other edge and measure the
normalised faithfulness f = (m(C) - m(empty)) / (m(full) - m(empty)); summarise each curve by CPR and CMD.

Two controls the field asks for: a **random-edge baseline** (edges in random order, ``n_random`` orders; without it
an effect cannot be told from noise), and a **bootstrap over prompts** (``n_bootstrap`` resamples with replacement:
scores, circuits and curves recomputed on each, giving a CI on CPR / CMD and each edge's selection frequency).

The prompts come as a list of :class:`.edges.Pairs` (one per prompt length); every number is a prompt-weighted mean
over them, so the list behaves as one prompt set.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from transformer_lens import HookedTransformer

from mechrepro.techniques import faithfulness as F
from mechrepro.techniques.edges import (
    ABLATIONS,
    Pairs,
    ablation_source,
    check_pairs,
    outputs,
    run_with_edges_removed,
    score_edges,
)
from mechrepro.techniques.graph import Graph
from mechrepro.techniques.selection import SELECTIONS, select

METHODS = ("exact", "eap", "eap_ig")
PROTOCOLS = {
    "patching": "edges outside the circuit carry the sender's output on the prompt's corrupted counterpart "
                "(resample / interchange ablation, per prompt); edges inside carry the current run's",
    "mean": "edges outside the circuit carry the sender's mean output over the corrupted prompts, per position",
    "zero": "edges outside the circuit carry zero",
}


@dataclass(frozen=True)
class DiscoveryConfig:
    """What to score and how to evaluate it. ``main`` is the method whose circuit is reported and bootstrapped."""

    methods: tuple[str, ...] = METHODS
    main: str = "eap_ig"
    ig_steps: int = 5
    ablation: str = "patching"
    selection: str = "topn"
    fractions: tuple[float, ...] = F.EDGE_FRACTIONS
    report_fraction: float = 0.2  # the reported circuit: this fraction of the edges
    n_random: int = 10
    n_bootstrap: int = 10
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "methods", tuple(self.methods))
        object.__setattr__(self, "fractions", tuple(float(f) for f in self.fractions))
        for m in self.methods:
            if m not in METHODS:
                raise ValueError(f"unknown discovery method {m!r}; known: {', '.join(METHODS)} (and the random "
                                 "baseline, always run)")
        if self.main not in self.methods:
            raise ValueError(f"the main method {self.main!r} is not among the methods {list(self.methods)}")
        if not isinstance(self.ig_steps, int) or self.ig_steps < 1:
            raise ValueError(f"ig_steps must be an integer >= 1 (EAP-IG's interpolation steps), got {self.ig_steps!r}")
        if self.ablation not in ABLATIONS:
            raise ValueError(f"unknown ablation {self.ablation!r}; known: {', '.join(ABLATIONS)}")
        if self.selection not in SELECTIONS:
            raise ValueError(f"unknown selection {self.selection!r}; known: {', '.join(SELECTIONS)}")
        bad = [f for f in self.fractions if not 0 < f <= 1]
        if bad:
            raise ValueError(f"edge fractions must lie in (0, 1]: {bad}")
        if self.report_fraction not in self.fractions:
            raise ValueError(f"report_fraction {self.report_fraction} must be one of the fractions {self.fractions}")
        if self.n_bootstrap and self.n_bootstrap < 10:
            raise ValueError(f"n_bootstrap must be 0 (off) or >= 10 resamples, got {self.n_bootstrap}")
        if self.n_random and self.n_random < 10:
            raise ValueError(f"n_random must be 0 (off) or >= 10 random orders, got {self.n_random}")

    @classmethod
    def from_config(cls, section: dict) -> DiscoveryConfig:
        return cls(**section)


@dataclass
class Discovery:
    """Everything a report shows of one discovery run; :meth:`save` writes it as long tables and JSON."""

    graph: Graph
    config: DiscoveryConfig
    edges: pd.DataFrame  # one row per edge: its columns and each method's mean score
    curves: pd.DataFrame  # method, run, fraction, n_edges, m_circuit, faithfulness
    bootstrap: pd.DataFrame  # resample, cpr, cmd
    frequency: np.ndarray  # [edge] selection frequency of the reported circuit over the resamples
    circuit: Tensor  # bool [edge]: the main method's circuit at report_fraction
    summary: dict = field(default_factory=dict)

    def circuit_nodes(self) -> list:
        """Heads and MLPs the reported circuit touches (sources and owners of its destinations)."""
        nodes = set()
        for e in self.circuit.nonzero().flatten().tolist():
            n, d = self.graph.edges[e]
            nodes |= {x for x in (n, d.owner) if x is not None and x.kind != "input"}
        return sorted(nodes, key=lambda x: (x.layer, x.kind != "head", x.head or 0))

    def save(self, edges_csv, curves_csv, bootstrap_csv, summary_json) -> None:
        from mechrepro.io import write_csv, write_json

        table = self.edges.assign(in_circuit=self.circuit.numpy(), selection_frequency=self.frequency)
        write_csv(edges_csv, table)
        write_csv(curves_csv, self.curves)
        write_csv(bootstrap_csv, self.bootstrap)
        write_json(summary_json, {"config": asdict(self.config), "protocol": PROTOCOLS[self.config.ablation],
                                  "circuit_nodes": [n.name for n in self.circuit_nodes()], **self.summary})


class _Evaluator:
    """m(C) per prompt for many circuits over every prompt set. Each set's ablation source is computed once, and
    each distinct circuit is run once: curves, random orders and bootstrap resamples share many circuits (the
    empty one above all, after pruning), and a resample only reweights the prompts."""

    def __init__(self, model: HookedTransformer, graph: Graph, sets: list[Pairs], ablation: str):
        self.model, self.graph, self.sets = model, graph, sets
        self.cache = [ablation_source(outputs(model, p.corrupted)[1], ablation) for p in sets]
        self.memo: dict[bytes, np.ndarray] = {}
        self.runs = 0
        n = graph.n_edges
        # [2 prompt]: the full model (no edge removed) and the empty circuit (every edge removed)
        self.ends = self.per_prompt(torch.stack([torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)]))

    def per_prompt(self, circuits: Tensor) -> np.ndarray:
        """[circuit prompt] metric with every edge outside each circuit (bool [circuit edge]) removed."""
        keys = [bytes(c.to(torch.bool).numpy().tobytes()) for c in circuits]
        todo = sorted({k: i for i, k in enumerate(keys) if k not in self.memo}.items(), key=lambda kv: kv[1])
        if todo:
            new = circuits[[i for _, i in todo]].to(torch.bool)
            removed = torch.stack([self.graph.to_mask(~c) & self.graph.adjacency for c in new])
            vals = torch.cat([run_with_edges_removed(self.model, self.graph, p, removed, src) for p, src in zip(
                self.sets, self.cache, strict=True)], dim=1).double().numpy()
            self.memo.update({k: v for (k, _), v in zip(todo, vals, strict=True)})
            self.runs += len(todo)
        return np.stack([self.memo[k] for k in keys])

    def prefetch(self, circuits: list[Tensor]) -> None:
        if circuits:
            self.per_prompt(torch.stack(circuits))


def _counts(graph: Graph, fractions) -> list[int]:
    return list(F.edge_counts(graph.n_edges, fractions))


def _curve(graph, ev, scores: Tensor, counts, how, weights) -> tuple[list[Tensor], np.ndarray, np.ndarray]:
    """Circuits for each edge count, and their per-prompt metric [count prompt]; the full and empty models'
    per-prompt metric [2 prompt]."""
    masks = [select(graph, scores, n, how) for n in counts]
    return masks, ev.per_prompt(torch.stack(masks)), ev.ends


def _faith(vals: np.ndarray, ends: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float, float]:
    m = vals @ w / w.sum()
    full, empty = (ends @ w / w.sum()).tolist()
    return F.normalized_faithfulness(m, empty, full), full, empty


def discover(model: HookedTransformer, sets: list[Pairs], cfg: DiscoveryConfig, log=print) -> Discovery:
    """Score, select, evaluate; the random baseline and the bootstrap (module docstring)."""
    t0 = time.perf_counter()
    graph = Graph.of(model)
    if not sets:
        raise ValueError("edge discovery needs at least one set of clean/corrupted prompts")
    for p in sets:
        check_pairs(model, p)
    ev = _Evaluator(model, graph, sets, cfg.ablation)
    n_prompts = sum(len(p.clean) for p in sets)
    ones = np.ones(n_prompts)
    counts = _counts(graph, cfg.fractions)
    per_prompt: dict[str, Tensor] = {}
    for method in cfg.methods:
        t = time.perf_counter()
        per_prompt[method] = torch.cat([score_edges(model, graph, p, method, cfg.ig_steps, cfg.ablation) for p in sets])
        log(f"[discovery {time.perf_counter() - t0:6.1f} s] {method}: {graph.n_edges} edges scored in "
            f"{time.perf_counter() - t:.2f} s")
    mean_scores = {m: s.double().mean(0) for m, s in per_prompt.items()}
    rows, circuits = [], {}
    summary: dict = {"n_edges": graph.n_edges, "n_prompts": n_prompts, "ablation": cfg.ablation,
                     "selection": cfg.selection}
    for method, scores in mean_scores.items():
        masks, vals, ends = _curve(graph, ev, scores.float(), counts, cfg.selection, ones)
        f, full, empty = _faith(vals, ends, ones)
        circuits[method] = masks[cfg.fractions.index(cfg.report_fraction)]
        rows += _curve_rows(method, 0, cfg.fractions, masks, vals @ ones / n_prompts, f)
        curve = F.Curve(method, cfg.fractions, tuple(int(m.sum()) for m in masks), tuple(float(x) for x in f))
        summary.update(_curve_summary(method, curve, graph.n_edges, cfg.report_fraction))
        summary.update({"m_full": full, "m_empty": empty})
    rng = np.random.default_rng(cfg.seed)
    orders = [torch.from_numpy(rng.permutation(graph.n_edges) + 1.0).float() for _ in range(cfg.n_random)]
    ev.prefetch([select(graph, o, n, "topn") for o in orders for n in counts])  # one batched run for all orders
    random_cprs = []
    for run, order in enumerate(orders):  # the control: edges in a random order
        masks, vals, ends = _curve(graph, ev, order, counts, "topn", ones)
        f, _, _ = _faith(vals, ends, ones)
        rows += _curve_rows("random", run, cfg.fractions, masks, vals @ ones / n_prompts, f)
        random_cprs.append(F.cpr(cfg.fractions, f))
    if random_cprs:
        lo, hi = F.percentile_interval(random_cprs)
        summary.update({"random.cpr_mean": float(np.mean(random_cprs)), "random.cpr_low": lo, "random.cpr_high": hi})
        for m in cfg.methods:
            summary[f"{m}.cpr_minus_random_high"] = summary[f"{m}.cpr"] - hi
    log(f"[discovery {time.perf_counter() - t0:6.1f} s] curves and {cfg.n_random} random orders done "
        f"({ev.runs} distinct circuits run)")
    boot, freq = _bootstrap(graph, ev, per_prompt[cfg.main], counts, cfg)
    if len(boot):
        for key in ("cpr", "cmd"):
            lo, hi = F.percentile_interval(boot[key])
            summary[f"{cfg.main}.{key}_low"], summary[f"{cfg.main}.{key}_high"] = lo, hi
    if "exact" in mean_scores:
        exact = mean_scores["exact"].abs().numpy()
        for m in ("eap", "eap_ig"):
            if m in mean_scores:
                summary[f"{m}.pearson_with_exact"] = float(np.corrcoef(mean_scores[m].abs().numpy(), exact)[0, 1])
        if {"eap", "eap_ig"} <= set(mean_scores):
            summary["eap_ig_minus_eap_pearson"] = summary["eap_ig.pearson_with_exact"] - summary["eap.pearson_with_exact"]
    edges = pd.DataFrame(graph.edge_table()).assign(**{f"score_{m}": s.numpy() for m, s in mean_scores.items()})
    # no wall time in the summary: results must be byte-identical run to run (the job's benchmark file has it)
    log(f"[discovery {time.perf_counter() - t0:6.1f} s] done: {summary}")
    return Discovery(graph, cfg, edges, pd.DataFrame(rows), boot, freq, circuits[cfg.main], summary)


def circuit_faithfulness(model: HookedTransformer, sets: list[Pairs], circuit: Tensor, ablation: str) -> dict:
    """How much of the metric one given circuit (bool [edge], e.g. a ground truth) keeps with every other edge
    ablated: ``m_full``, ``m_empty``, ``m_circuit`` (means over every prompt of every set) and the normalized
    faithfulness f = (m(C) - m(empty)) / (m(full) - m(empty)) (Hanna et al. 2024, MIB)."""
    graph = Graph.of(model)
    if circuit.shape != (graph.n_edges,):
        raise ValueError(f"circuit must be bool [{graph.n_edges}] (one entry per edge), got {tuple(circuit.shape)}")
    ev = _Evaluator(model, graph, sets, ablation)
    vals = ev.per_prompt(circuit.to(torch.bool)[None])
    w = np.ones(vals.shape[1])
    f, full, empty = _faith(vals, ev.ends, w)
    return {"m_full": full, "m_empty": empty, "m_circuit": float(vals[0].mean()), "faithfulness": float(f[0])}


def _curve_rows(method, run, fractions, masks, m_circuit, f) -> list[dict]:
    return [{"method": method, "run": run, "fraction": fr, "n_edges": int(mask.sum()), "m_circuit": float(mc),
             "faithfulness": float(x)} for fr, mask, mc, x in zip(fractions, masks, m_circuit, f, strict=True)]


def _curve_summary(method: str, curve: F.Curve, n_edges: int, report_fraction: float) -> dict:
    needed = {t: curve.edges_needed(t) for t in (0.8, 0.9)}
    at = curve.fractions.index(report_fraction)
    return {f"{method}.cpr": curve.cpr, f"{method}.cmd": curve.cmd,
            f"{method}.edges_needed_80": needed[0.8], f"{method}.edges_needed_90": needed[0.9],
            f"{method}.fraction_needed_80": None if needed[0.8] is None else needed[0.8] / n_edges,
            f"{method}.circuit_faithfulness": curve.faithfulness[at], f"{method}.circuit_edges": curve.n_edges[at]}


def _bootstrap(graph, ev, per_prompt: Tensor, counts, cfg: DiscoveryConfig) -> tuple[pd.DataFrame, np.ndarray]:
    """Resample prompts with replacement: the main method's scores, circuits and curve on each resample."""
    if not cfg.n_bootstrap:
        return pd.DataFrame(columns=["resample", "cpr", "cmd", "n_edges"]), np.full(graph.n_edges, np.nan)
    n = per_prompt.shape[0]
    at = cfg.fractions.index(cfg.report_fraction)
    rows, hits = [], np.zeros(graph.n_edges)
    weights = [np.bincount(idx, minlength=n).astype(float) for idx in F.bootstrap_indices(n, cfg.n_bootstrap,
                                                                                         cfg.seed + 1)]
    scores = [torch.from_numpy(w @ per_prompt.double().numpy() / w.sum()).float() for w in weights]
    ev.prefetch([select(graph, s, k, cfg.selection) for s in scores for k in counts])
    for i, (w, s) in enumerate(zip(weights, scores, strict=True)):
        masks, vals, ends = _curve(graph, ev, s, counts, cfg.selection, w)
        f, _, _ = _faith(vals, ends, w)
        hits += masks[at].numpy()
        rows.append({"resample": i, "cpr": F.cpr(cfg.fractions, f), "cmd": F.cmd(cfg.fractions, f),
                     "n_edges": int(masks[at].sum())})
    return pd.DataFrame(rows), hits / cfg.n_bootstrap
