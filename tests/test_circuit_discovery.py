"""Scoring methods against a known circuit (src/mechrepro/tasks/circuit_discovery.py) on the hand-built model."""

import pytest

from mechrepro.tasks import circuit_discovery as CD

SECTION = {"truths": ["handbuilt"], "methods": ["exact", "eap", "eap_ig"], "ig_steps": 3, "n_prompts": 8,
           "n_random": 10, "seed": 0, "handbuilt": {"d_vocab": 12, "n_ctx": 16}, "tracr": {}, "planted_ioi": {}}


@pytest.fixture(scope="module")
def scored():
    gt = CD.build_truth("handbuilt", SECTION)
    return gt, CD.score(gt, CD.truth_pairs(gt, SECTION), CD.ScoringConfig(ig_steps=3), log=lambda *a: None)


def test_every_method_is_scored_under_both_ablations(scored):
    gt, s = scored
    assert gt.name == "handbuilt"
    got = s.auroc.groupby(["matched", "level"]).method.apply(set).to_dict()
    assert got[(True, "edge")] == got[(False, "edge")] == {"exact", "eap", "eap_ig", "random"}
    assert got[(True, "node")] == {"exact", "eap", "eap_ig"}
    assert set(s.auroc.ablation) == {gt.ablation, CD.MISMATCH[gt.ablation]}
    assert s.summary["mismatched_ablation"] != s.summary["ablation"]
    # ROC points run from (0, 0) to (1, 1) for each curve
    for _, r in s.roc.groupby(["matched", "method", "level"]):
        assert (r.fpr.iloc[0], r.tpr.iloc[0], r.fpr.iloc[-1], r.tpr.iloc[-1]) == (0, 0, 1, 1)


def test_the_planted_heads_rank_first_and_random_is_near_chance(scored):
    _, s = scored
    for m in ("exact", "eap", "eap_ig"):
        assert s.summary[f"{m}.matched.planted_in_top"] == 1.0
        assert s.summary[f"{m}.matched.node_auroc"] == 1.0
    assert s.summary["all_methods.matched.planted_in_top"] == 1.0
    assert 0.3 < s.summary["random.matched.edge_auroc"] < 0.7
    top = s.nodes[s.nodes.matched & (s.nodes.method == "exact")].sort_values("rank").node.tolist()[:2]
    assert set(top) == {"0.0", "1.0"}


def test_bad_names_and_settings_are_refused():
    with pytest.raises(ValueError, match="unknown ground truth 'tracr_sort'"):
        CD.build_truth("tracr_sort", SECTION)
    with pytest.raises(ValueError, match="unknown methods"):
        CD.ScoringConfig(methods=("acdc",))
    with pytest.raises(ValueError, match="n_random"):
        CD.ScoringConfig(n_random=3)


def test_the_claims_fail_on_a_model_without_the_mechanism():
    """The same known circuit on a random-init model of the same shape (no planted heads): the planted heads no
    longer rank first for every method, and the AUROCs fall below the claims' 1.0 / 0.9 bars."""
    import torch

    from mechrepro.groundtruth import GroundTruth

    gt = CD.build_truth("handbuilt", SECTION)
    with torch.no_grad():
        g = torch.Generator().manual_seed(7)
        for p in gt.model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    blank = GroundTruth(gt.name, gt.model, gt.edges, gt.ablation, gt.classes, gt.card)
    s = CD.score(blank, CD.truth_pairs(blank, SECTION), CD.ScoringConfig(ig_steps=3), log=lambda *a: None).summary
    assert s["all_methods.matched.planted_in_top"] < 1.0
    assert s["best.matched.edge_auroc"] < 1.0 and min(s[f"{m}.matched.node_auroc"] for m in CD.METHODS) < 0.9
