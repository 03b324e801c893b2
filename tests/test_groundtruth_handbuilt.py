"""The hand-built induction model as a ground truth: its edges, its task, and two scorers against it."""

import pytest
import torch

from mechrepro.groundtruth import GroundTruth
from mechrepro.groundtruth.handbuilt import NAME, build, task_pairs
from mechrepro.techniques.edges import eap_scores, exact_scores


@pytest.fixture(scope="module")
def gt():
    return build()


@pytest.fixture(scope="module")
def pairs(gt):
    return task_pairs(gt.model, n_prompts=16, seed=0)[0]


def _node_ranking(graph, scores):
    """Heads by the sum of |edge score| over the edges entering or leaving them, largest first."""
    total = {}
    for e, (node, dest) in enumerate(graph.edges):
        for n in (node, dest.owner):
            if n is not None and n.kind == "head":
                total[n.name] = total.get(n.name, 0.0) + abs(float(scores[e]))
    return sorted(total, key=lambda k: -total[k]), total


def test_edges_are_the_ones_the_weights_define(gt):
    g = gt.graph
    names = {g.edge_name(e) for e in range(g.n_edges) if gt.edge_labels()[e]}
    assert names == {"input -> 0.0<q>", "input -> 0.0<k>", "input -> 0.0<v>", "0.0 -> 1.0<k>", "input -> 1.0<q>",
                     "input -> 1.0<v>", "1.0 -> logits", "input -> logits"}
    assert gt.classes == {"previous_token": [(0, 0)], "induction": [(1, 0)]} and gt.ablation == "patching"
    labels = gt.node_labels()
    assert labels["0.0"] and labels["1.0"] and not labels["0.1"] and not labels["1.1"]


def test_predicts_the_second_half(gt, pairs):
    n = (pairs.clean.shape[1] - 1) // 2
    logits = gt.model(pairs.clean)
    assert torch.equal(logits[:, n + 1:2 * n].argmax(-1), pairs.clean[:, n + 2:])
    clean, corrupted = pairs.metric(logits), pairs.metric(gt.model(pairs.corrupted))
    assert clean.shape == (16,) and (clean > corrupted + 5).all()


@pytest.mark.parametrize("method", ["exact", "eap_ig"])
def test_scorers_rank_the_planted_heads_first(gt, pairs, method):
    g = gt.graph
    scores = (exact_scores(gt.model, g, pairs) if method == "exact"
              else eap_scores(gt.model, g, pairs, ig_steps=5)).mean(0)
    top = int(scores.abs().argmax())
    node, dest = g.edges[top]
    assert {node.name, dest.owner.name if dest.owner else None} & {"0.0", "1.0"}, g.edge_name(top)
    order, total = _node_ranking(g, scores)
    assert order[:2] == ["1.0", "0.0"], total
    # the zero heads carry nothing, in either scorer
    assert total["0.1"] == pytest.approx(0, abs=1e-6) and total["1.1"] == pytest.approx(0, abs=1e-6)


def test_round_trips_through_save_and_load(gt, pairs, tmp_path):
    gt.save(tmp_path)
    back = GroundTruth.load(tmp_path)
    assert back.name == NAME and back.ablation == gt.ablation and back.classes == gt.classes
    assert torch.equal(back.edges, gt.edges) and back.card == gt.card
    assert torch.allclose(back.model(pairs.clean), gt.model(pairs.clean))


def test_task_pairs_refuse_a_length_that_does_not_fit(gt):
    with pytest.raises(ValueError, match="do not fit"):
        task_pairs(gt.model, 4, 0, length=8)
