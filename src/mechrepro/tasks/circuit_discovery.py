"""Circuit discovery scored against known circuits: every method on every ground-truth model.

Conmy et al. 2023 (ACDC, §4.2) score methods by ROC AUC against tracr-compiled circuits and hand-found ones;
Miller et al. 2024 (*Transformer Circuit Faithfulness Metrics are not Robust*, §5) show that ACDC's tracr AUROC swings
from about 0.2-0.6 (random-input ablation) to 1.0 (zero ablation) because the ground truth was defined under zero
ablation: a method run under another ablation is scored against a circuit it was never asked for. Gupta et al. 2024
(InterpBench) plant circuits by interchange-intervention training. So each ground truth here is scored twice, under
the ablation it is exact under ("matched") and under another ("mismatched"), side by side:

* edge and node AUROC of exact edge patching, EAP, EAP-IG and random scores (:mod:`mechrepro.techniques.roc`);
* the faithfulness curve of each method's circuits (:func:`mechrepro.techniques.discovery.discover`);
* on a model with planted head classes, whether the top-ranked heads are the planted ones;
* the ground truth's own faithfulness under each ablation (its circuit kept, every other edge ablated): the
  yardstick of the AUROCs, which mean little against a circuit that does not carry the metric;
* on the planted IOI model, Wang et al.'s backwards path-patching recipe: does it put each planted head in its class.

The ground truths (:mod:`mechrepro.groundtruth`) and their tasks come from :func:`build_truth` / :func:`truth_pairs`;
this module only states the task and reads the numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch

from mechrepro.groundtruth import GroundTruth
from mechrepro.techniques.discovery import DiscoveryConfig, circuit_faithfulness, discover
from mechrepro.techniques.edges import ABLATIONS, Pairs
from mechrepro.techniques.faithfulness import EDGE_FRACTIONS
from mechrepro.techniques.roc import auroc, node_scores, roc_curve

METHODS = ("exact", "eap", "eap_ig")
# The ablation each ground truth is *not* defined with, to show what a mismatch does (Miller et al. 2024 §5).
MISMATCH = {"zero": "patching", "patching": "zero", "mean": "zero"}


@dataclass(frozen=True)
class ScoringConfig:
    methods: tuple[str, ...] = METHODS
    ig_steps: int = 5
    fractions: tuple[float, ...] = EDGE_FRACTIONS
    n_random: int = 10
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "methods", tuple(self.methods))
        object.__setattr__(self, "fractions", tuple(float(f) for f in self.fractions))
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"unknown methods {unknown}; known: {', '.join(METHODS)} (random always runs)")
        if self.n_random < 10:
            raise ValueError(f"n_random must be >= 10 random orders (the baseline's spread), got {self.n_random}")

    def discovery(self, ablation: str) -> DiscoveryConfig:
        main = "eap_ig" if "eap_ig" in self.methods else self.methods[0]
        return DiscoveryConfig(methods=self.methods, main=main, ig_steps=self.ig_steps, ablation=ablation,
                               fractions=self.fractions, report_fraction=self.fractions[-1],
                               n_random=self.n_random, n_bootstrap=0, seed=self.seed)


@dataclass
class Scored:
    """One ground truth's results: long tables with explicit columns, and the summary numbers."""

    truth: str
    auroc: pd.DataFrame  # ablation, matched, method, level (edge/node), auroc
    roc: pd.DataFrame  # ablation, matched, method, level, point, fpr, tpr
    curves: pd.DataFrame  # ablation, matched, method, run, fraction, n_edges, m_circuit, faithfulness
    nodes: pd.DataFrame  # ablation, matched, method, node, score, rank, in_truth
    summary: dict = field(default_factory=dict)

    def save(self, out: dict) -> None:
        from mechrepro.io import write_csv, write_json

        for key in ("auroc", "roc", "curves", "nodes"):
            write_csv(out[key], getattr(self, key))
        write_json(out["summary"], self.summary)


def _ranks(values: dict[str, float]) -> dict[str, int]:
    """1 = the largest; ties share the best rank among them."""
    ordered = sorted(values.values(), reverse=True)
    return {k: ordered.index(v) + 1 for k, v in values.items()}


def score(gt: GroundTruth, sets: list[Pairs], cfg: ScoringConfig, log=print) -> Scored:
    """Every method under the ground truth's ablation and under :data:`MISMATCH`'s, against ``gt``."""
    if gt.ablation not in ABLATIONS:
        raise ValueError(f"ground truth {gt.name!r}: unknown ablation {gt.ablation!r}")
    graph = gt.graph
    truth_edges = gt.edge_labels()
    truth_nodes = gt.node_labels()
    planted = {f"{layer}.{head}" for heads in gt.classes.values() for layer, head in heads}
    rng = np.random.default_rng(cfg.seed)
    random_orders = [rng.permutation(graph.n_edges).astype(float) for _ in range(cfg.n_random)]
    aurocs, rocs, curves, node_rows, summary = [], [], [], [], {"ablation": gt.ablation,
                                                                  "n_edges": graph.n_edges,
                                                                  "n_truth_edges": int(truth_edges.sum()),
                                                                  "n_truth_nodes": sum(truth_nodes.values())}
    summary["mismatched_ablation"] = MISMATCH[gt.ablation]
    for which, ablation in (("matched", gt.ablation), ("mismatched", MISMATCH[gt.ablation])):
        log(f"[{gt.name}] {which} ablation: {ablation}")
        found = discover(gt.model, sets, cfg.discovery(ablation), log=log)
        # the ground truth's own circuit, every other edge ablated: a truth that keeps little of the metric is
        # a mechanism at another level (IIT plants nodes at positions, not edges), and its AUROCs say so
        truth_f = circuit_faithfulness(gt.model, sets, truth_edges, ablation)
        summary[f"truth.{which}.faithfulness"] = truth_f["faithfulness"]
        log(f"[{gt.name}] ground-truth circuit under {ablation}: {truth_f}")
        curves.append(found.curves.assign(ablation=ablation, matched=which == "matched"))
        scores = {m: torch.tensor(found.edges[f"score_{m}"].to_numpy()) for m in cfg.methods}
        for m, s in scores.items():
            per_node = node_scores(graph, s)
            names = list(truth_nodes)
            for level, sc, y in (("edge", s.abs().numpy(), truth_edges.numpy()),
                                 ("node", np.array([per_node[n] for n in names]), np.array([truth_nodes[n] for n in names]))):
                a = auroc(sc, y)
                aurocs.append({"ablation": ablation, "matched": which == "matched", "method": m, "level": level,
                               "auroc": a})
                summary[f"{m}.{which}.{level}_auroc"] = a
                fpr, tpr = roc_curve(sc, y)
                rocs += [{"ablation": ablation, "matched": which == "matched", "method": m, "level": level,
                          "point": i, "fpr": float(f), "tpr": float(t)} for i, (f, t) in enumerate(zip(fpr, tpr, strict=True))]
            ranks = _ranks(per_node)
            node_rows += [{"ablation": ablation, "matched": which == "matched", "method": m, "node": n,
                           "score": per_node[n], "rank": ranks[n], "in_truth": truth_nodes[n]} for n in names]
            if planted:  # are the top len(planted) heads the planted ones?
                top = sorted(names, key=lambda n: (ranks[n], names.index(n)))[: len(planted)]
                summary[f"{m}.{which}.planted_in_top"] = len(planted & set(top)) / len(planted)
        for level in ("edge", "node"):
            best = max(summary[f"{m}.{which}.{level}_auroc"] for m in cfg.methods)
            summary[f"best.{which}.{level}_auroc"] = best
        rand = [auroc(o, truth_edges.numpy()) for o in random_orders]
        summary[f"random.{which}.edge_auroc"] = float(np.mean(rand))
        aurocs.append({"ablation": ablation, "matched": which == "matched", "method": "random", "level": "edge",
                       "auroc": float(np.mean(rand))})
        for m in cfg.methods:
            summary[f"{m}.{which}.cpr"] = found.summary[f"{m}.cpr"]
        if planted:
            summary[f"all_methods.{which}.planted_in_top"] = min(summary[f"{m}.{which}.planted_in_top"]
                                                                 for m in cfg.methods)
    summary["config"] = asdict(cfg)
    summary["random_weights"] = False  # a ground-truth model, never a random-init stand-in
    return Scored(gt.name, pd.DataFrame(aurocs), pd.DataFrame(rocs), pd.concat(curves, ignore_index=True),
                  pd.DataFrame(node_rows), summary)


# ---------------------------------------------------------------------------------------------
# The ground truths of the config section (``truths``), by name.

TRUTHS = ("handbuilt", "tracr_reverse", "tracr_frac_prevs", "planted_ioi")


def _check_truth(name: str) -> None:
    if name not in TRUTHS:
        raise ValueError(f"unknown ground truth {name!r}; known: {', '.join(TRUTHS)}")


def planted_config(section: dict):
    from mechrepro.groundtruth.planted_ioi import PlantedIOIConfig

    over = {k: tuple(v) if isinstance(v, list) else v for k, v in section["planted_ioi"].items()}
    return PlantedIOIConfig(**over)


def build_truth(name: str, section: dict) -> GroundTruth:
    """Build (compile, hand-set or train) the ground truth ``name`` with the ``circuit_discovery`` config section;
    it carries that name (its results are filed under it)."""
    gt = _build(name, section)
    gt.name = name
    if "wall_s" in gt.card:  # a time goes to the log, not the card: a ground truth is byte-identical run to run
        print(f"{name}: built in {gt.card.pop('wall_s'):.1f} s")
    return gt


def _build(name: str, section: dict) -> GroundTruth:
    _check_truth(name)
    if name == "handbuilt":
        from mechrepro.groundtruth import handbuilt

        return handbuilt.build(**section["handbuilt"], seed=section["seed"])
    if name.startswith("tracr_"):
        from mechrepro.groundtruth import tracr  # imports jax: only here

        program = name.removeprefix("tracr_")
        return tracr.build(program, seed=section["seed"], **section["tracr"].get(program, {}))
    from mechrepro.groundtruth import planted_ioi

    return planted_ioi.train(planted_config(section))


def truth_pairs(gt: GroundTruth, section: dict) -> list[Pairs]:
    """The task each ground truth is scored on: clean / corrupted prompts and a per-prompt metric."""
    name, n, seed = gt.name, section["n_prompts"], section["seed"] + 1
    _check_truth(name)
    if name == "handbuilt":
        from mechrepro.groundtruth import handbuilt

        return handbuilt.task_pairs(gt.model, n, seed)
    if name.startswith("tracr_"):
        from mechrepro.groundtruth import tracr

        # every input length from 2 up: with full-length inputs alone the length a program computes is a constant,
        # and no ablation of this task could show the edges that compute it
        lengths = tuple(range(2, gt.card["max_seq_len"] + 1))
        return tracr.task_pairs(gt, name.removeprefix("tracr_"), n, seed, lengths=lengths)
    from mechrepro.groundtruth import planted_ioi

    return planted_ioi.task_pairs(gt.model, cfg=planted_ioi.config_of(gt), n_prompts=n, seed=seed + 100)


def recipe(gt: GroundTruth, section: dict) -> dict:
    """Wang et al.'s backwards path-patching recipe on a model with planted IOI classes: per class the heads found,
    precision and recall against the planted ones, and the smallest precision / recall over the classes (a class
    the recipe leaves empty counts as precision 0)."""
    from mechrepro.groundtruth import planted_ioi

    cfg = planted_ioi.config_of(gt)
    found = planted_ioi.recipe_classes(gt, ioi_cfg=planted_ioi.recipe_config(
        cfg, n_prompts=section["n_prompts"], seed=section["seed"] + 100))
    per_class = planted_ioi.class_scores(found["classes"], gt.classes)
    out: dict = {"recipe_found": {c: [f"{la}.{h}" for la, h in hs] for c, hs in found["classes"].items() if hs},
                 "recipe_stopped": found["stopped"]}
    for cls, r in per_class.items():
        out[f"recipe.{cls}.precision"], out[f"recipe.{cls}.recall"] = r["precision"], r["recall"]
    out["recipe.min_recall"] = min(r["recall"] for r in per_class.values())
    out["recipe.min_precision"] = min(r["precision"] or 0.0 for r in per_class.values())
    return out


__all__ = ["METHODS", "MISMATCH", "TRUTHS", "ScoringConfig", "Scored", "build_truth", "recipe", "score",
           "truth_pairs"]
