"""Scoring a circuit-discovery method against a known circuit: ROC curves and their area.

Conmy et al. 2023 (*Towards Automated Circuit Discovery*, §4.2, Fig. 3) sweep a method's threshold and plot the
true-positive rate (ground-truth edges it keeps) against the false-positive rate (other edges it keeps); the area
under that curve (AUROC) is 1 when every ground-truth edge outranks every other edge, 0.5 for a random order.
At the node level a head or MLP is kept as soon as one of its edges is (their node-level ROC), so a node's score is
the largest |score| of the edges that enter or leave it.

Scores are ranked by magnitude (|score|: an edge that hurts the metric when removed matters as much as one that
helps). Ties get the average rank (the Mann-Whitney form of the AUROC), so a method that scores every edge 0 gets
0.5, not 1.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Bool, Float
from torch import Tensor

from mechrepro.techniques.graph import HEAD, LOGITS, MLP, Graph


def _check(scores: np.ndarray, labels: np.ndarray) -> None:
    if scores.shape != labels.shape or scores.ndim != 1:
        raise ValueError(f"scores and labels must be 1-d of one length, got {scores.shape} and {labels.shape}")
    if not np.isfinite(scores).all():
        raise ValueError(f"{int((~np.isfinite(scores)).sum())} scores are NaN or inf: no ranking to score")
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == len(labels):
        raise ValueError(f"an ROC needs both classes: {n_pos} of {len(labels)} items are in the ground truth")


def auroc(scores, labels) -> float:
    """Area under the ROC curve of ``scores`` (higher: more likely in the circuit) against bool ``labels``: the
    probability that a ground-truth item outranks another, ties counted half."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    _check(s, y)
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    # average ranks over ties (1-based)
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rates, true-positive rates) at every distinct threshold, from (0, 0) to (1, 1); tied scores
    enter together (a diagonal step), so the trapezoid area equals :func:`auroc`."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    _check(s, y)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp, fp = np.cumsum(y)[last_of_tie], np.cumsum(~y)[last_of_tie]
    return np.r_[0.0, fp / (~y).sum()], np.r_[0.0, tp / y.sum()]


def node_scores(graph: Graph, edge_scores: Float[Tensor, " edge"]) -> dict[str, float]:
    """Per head and MLP (by name, in graph order): the largest |score| of an edge that leaves or enters it."""
    mags = edge_scores.abs().double()
    best: dict[str, float] = {n.name: 0.0 for n in graph.nodes if n.kind in (HEAD, MLP)}
    for e, (src, dst) in enumerate(graph.edges):
        for node in (src, None if dst.kind == LOGITS else dst.owner):
            if node is not None and node.name in best:
                best[node.name] = max(best[node.name], float(mags[e]))
    return best


def score_against(graph: Graph, edge_scores: Float[Tensor, " edge"], truth: Bool[Tensor, " edge"],
                  truth_nodes: dict[str, bool]) -> dict[str, float]:
    """Edge- and node-level AUROC of one method's scores against a ground truth."""
    nodes = node_scores(graph, edge_scores)
    names = list(truth_nodes)
    return {"edge_auroc": auroc(edge_scores.abs().numpy(), truth.numpy()),
            "node_auroc": auroc([nodes[n] for n in names], [truth_nodes[n] for n in names])}


__all__ = ["auroc", "node_scores", "roc_curve", "score_against"]
