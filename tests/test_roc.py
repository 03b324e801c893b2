"""ROC / AUROC (src/mechrepro/techniques/roc.py) against a brute-force pair count, and node scores on a graph."""

import numpy as np
import pytest
import torch

from mechrepro.techniques.graph import Graph
from mechrepro.techniques.roc import auroc, node_scores, roc_curve, score_against


def brute_auroc(s, y):
    pos, neg = s[y], s[~y]
    return np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg])


@pytest.mark.parametrize("seed", range(5))
def test_auroc_is_the_pair_count_and_the_curve_area(seed):
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 6, size=40).astype(float)  # many ties
    y = rng.random(40) < 0.3
    y[0], y[1] = True, False
    assert auroc(s, y) == pytest.approx(brute_auroc(s, y), abs=1e-12)
    fpr, tpr = roc_curve(s, y)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1 and (np.diff(fpr) >= 0).all()
    assert np.trapezoid(tpr, fpr) == pytest.approx(auroc(s, y), abs=1e-12)


def test_perfect_reversed_and_constant_rankings():
    y = np.array([True, True, False, False, False])
    assert auroc([5, 4, 3, 2, 1], y) == 1.0
    assert auroc([1, 2, 3, 4, 5], y) == 0.0
    assert auroc([0, 0, 0, 0, 0], y) == 0.5  # all scores 0: no ranking, not a perfect one


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="both classes"):
        auroc([1, 2], [True, True])
    with pytest.raises(ValueError, match="NaN"):
        auroc([1, float("nan")], [True, False])
    with pytest.raises(ValueError, match="one length"):
        auroc([1, 2, 3], [True, False])


def test_node_scores_take_the_largest_edge_touching_the_node(tiny_model):
    graph = Graph.of(tiny_model)
    scores = torch.zeros(graph.n_edges)
    names = [graph.edge_name(e) for e in range(graph.n_edges)]
    scores[names.index("0.1 -> 1.2<v>")] = -3.0  # leaves 0.1, enters 1.2
    scores[names.index("input -> 1.2<q>")] = 1.0
    nodes = node_scores(graph, scores)
    assert nodes["0.1"] == 3.0 and nodes["1.2"] == 3.0 and nodes["0.0"] == 0.0
    truth = torch.tensor([n in ("0.1 -> 1.2<v>", "input -> 1.2<q>") for n in names])
    got = score_against(graph, scores, truth, {n: n in ("0.1", "1.2") for n in nodes})
    assert got == {"edge_auroc": 1.0, "node_auroc": 1.0}
