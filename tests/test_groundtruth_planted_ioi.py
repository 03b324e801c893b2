"""The planted IOI ground truth (src/mechrepro/groundtruth/planted_ioi.py): its bad inputs, its edges, and the
yardstick of a ground truth's own faithfulness. Training to the target costs ~30 s, so the trained model is checked
in the end-to-end run (tests/test_end_to_end.py); here the runs are a few steps on a small model."""

import pytest
import torch

from mechrepro.data.tokenizer import build_tokenizer
from mechrepro.groundtruth import GroundTruth, planted_ioi
from mechrepro.groundtruth.handbuilt import edge_mask
from mechrepro.tasks import circuit_discovery as CD
from mechrepro.techniques.discovery import circuit_faithfulness
from mechrepro.techniques.graph import Graph

# A model that trains in a fraction of a second and cannot reach any useful accuracy in 3 steps.
TINY = {"n_layers": 3, "n_heads": 2, "d_model": 16, "d_head": 8, "steps": 3, "batch_size": 8, "n_prompts": 40,
        "n_eval": 16, "duplicate": (0, 1), "s_inhibition": (1, 0), "name_mover": (2, 1)}
SECTION = {"truths": ["planted_ioi"], "methods": ["exact"], "ig_steps": 1, "n_prompts": 8, "n_random": 10,
           "seed": 0, "handbuilt": {}, "tracr": {}, "planted_ioi": {k: list(v) if isinstance(v, tuple) else v
                                                                   for k, v in TINY.items()}}


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def test_a_run_below_its_target_raises_with_the_accuracies_reached(tokenizer):
    cfg = planted_ioi.PlantedIOIConfig(**TINY)
    with pytest.raises(planted_ioi.IITTargetNotReached) as err:
        planted_ioi.train(cfg, tokenizer, progress=False)
    msg = str(err.value)
    for part in ("below its target accuracy 0.9", "iit[duplicate] =", "iit[s_inhibition] =", "iit[name_mover] =",
                 "ioi_top1 =", "strict", "not a ground truth"):
        assert part in msg, msg


def test_the_job_refuses_it_and_leaves_no_ground_truth(tmp_path):
    """build_truth (the rule's one call) raises before anything is saved; a folder without a card is no truth."""
    with pytest.raises(planted_ioi.IITTargetNotReached):
        CD.build_truth("planted_ioi", SECTION)
    with pytest.raises(FileNotFoundError, match="card.json missing"):
        GroundTruth.load(tmp_path)


def test_certify_names_each_low_accuracy():
    acc = {"iit_accuracy": {"duplicate": 0.95, "s_inhibition": 0.5, "name_mover": 0.99}, "ioi": {"ioi_top1": 0.97},
           "strict_accuracy_min": 0.9}
    with pytest.raises(planted_ioi.IITTargetNotReached, match=r"0\.9: iit\[s_inhibition\] = 0\.500 \(reached"):
        planted_ioi.certify(acc, 0.9)
    planted_ioi.certify(acc, 0.5)  # everything at or above 0.5: no error


@pytest.mark.parametrize("over, match", [
    ({"name_mover": (3, 0)}, "planted name_mover head 3.0 is outside the model"),
    ({"s_inhibition": (1, 2)}, "planted s_inhibition head 1.2 is outside the model"),
    ({"duplicate": (-1, 0)}, "planted duplicate head -1.0 is outside the model"),
    ({"s_inhibition": (0, 1)}, "same head 0.1"),
    ({"s_inhibition": (2, 0), "name_mover": (1, 0)}, "increasing layers"),
    ({"template": "paper-99"}, "unknown template 'paper-99'"),
    ({"target_accuracy": 0}, "target_accuracy"),
    ({"iit_weight": 0}, "nothing would plant"),
])
def test_bad_settings_are_refused_before_training(over, match):
    with pytest.raises(ValueError, match=match):
        planted_ioi.PlantedIOIConfig(**{**TINY, **over})


def test_a_planted_head_outside_the_model_fails_the_job_from_its_config_section():
    section = {**SECTION, "planted_ioi": {**SECTION["planted_ioi"], "name_mover": [7, 1]}}
    with pytest.raises(ValueError, match="planted name_mover head 7.1 is outside the model"):
        CD.build_truth("planted_ioi", section)


def test_the_ground_truth_edges_are_the_high_level_graph(tokenizer):
    cfg = planted_ioi.PlantedIOIConfig(**TINY)
    model = planted_ioi.make_model(cfg, len(tokenizer), 16)
    g = GroundTruth(planted_ioi.NAME, model, edge_mask(Graph.of(model), planted_ioi.ground_truth_edges(cfg)),
                    "patching", cfg.classes)
    names = {g.graph.edge_name(e) for e in range(g.graph.n_edges) if g.edge_labels()[e]}
    assert names == {"input -> 0.1<q>", "input -> 0.1<k>", "input -> 0.1<v>", "input -> 1.0<q>", "input -> 1.0<k>",
                     "0.1 -> 1.0<v>", "input -> 2.1<q>", "input -> 2.1<k>", "input -> 2.1<v>", "1.0 -> 2.1<q>",
                     "2.1 -> logits"}
    assert g.classes == {"duplicate_token": [(0, 1)], "s_inhibition": [(1, 0)], "name_mover": [(2, 1)]}
    labels = g.node_labels()
    assert labels["0.1"] and labels["1.0"] and labels["2.1"] and not labels["0.0"] and not labels["2.0"]


def test_config_round_trips_through_the_card():
    cfg = planted_ioi.PlantedIOIConfig(**TINY)
    model = planted_ioi.make_model(cfg, 50, 16)
    gt = GroundTruth(planted_ioi.NAME, model, edge_mask(Graph.of(model), planted_ioi.ground_truth_edges(cfg)),
                     "patching", cfg.classes, {"config": cfg.to_json()})
    assert planted_ioi.config_of(gt) == cfg


def test_circuit_faithfulness_is_one_for_the_whole_graph_and_for_an_exact_truth():
    """The yardstick the scoring job reports for each ground truth: the hand-built model's circuit is exact (f = 1
    under both ablations), the whole graph is f = 1 and the empty circuit f = 0 by definition; the truth less its
    K-composition edge keeps far less."""
    section = {**SECTION, "truths": ["handbuilt"], "handbuilt": {"d_vocab": 12, "n_ctx": 16}}
    gt = CD.build_truth("handbuilt", section)
    sets = CD.truth_pairs(gt, section)
    labels = gt.edge_labels()
    for ablation in ("patching", "zero"):
        assert circuit_faithfulness(gt.model, sets, labels, ablation)["faithfulness"] == pytest.approx(1, abs=1e-4)
    every = circuit_faithfulness(gt.model, sets, torch.ones_like(labels), "patching")
    none = circuit_faithfulness(gt.model, sets, torch.zeros_like(labels), "patching")
    assert every["faithfulness"] == pytest.approx(1) and none["faithfulness"] == pytest.approx(0, abs=1e-6)
    assert every["m_full"] > every["m_empty"] + 1
    # without its K-composition edge the induction head attends nowhere useful: the circuit keeps little
    graph = gt.graph
    broken = labels.clone()
    broken[[e for e in range(graph.n_edges) if graph.edge_name(e) == "0.0 -> 1.0<k>"]] = False
    assert int(broken.sum()) == int(labels.sum()) - 1
    assert circuit_faithfulness(gt.model, sets, broken, "patching")["faithfulness"] < 0.5
    with pytest.raises(ValueError, match="one entry per edge"):
        circuit_faithfulness(gt.model, sets, labels[:-1], "patching")
