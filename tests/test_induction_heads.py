import numpy as np
import pandas as pd
import pytest

from conftest import distinct_probes
from mechrepro.tasks import induction_heads as ih

CFG = ih.InductionConfig(phase_models=(), main_model="x", probe_lengths=(5,), n_probes=4, n_reference=4, icl_early=1,
                         icl_late=5, n_icl_docs=4, top_k=1, n_control_draws=3, head_threshold=0.3,
                         composition_samples=20, seed=0)


def test_transition_index():
    rising = np.array([0.05, 0.05, 0.06, 0.1, 0.7, 0.85, 0.9])
    assert ih.transition_index(rising, rising=True) == 4
    # The ICL score first rises (context-free statistics), then falls when induction heads form.
    icl = np.array([0.0, 0.2, 0.3, 0.25, -0.8, -1.0, -1.1])
    assert ih.transition_index(icl, rising=False) == 4
    noisy = np.array([0.1, 0.6, 0.1, 0.2, 0.7, 0.8])  # an early blip does not count: values must stay past
    assert ih.transition_index(noisy, rising=True) == 4


def test_phase_change_summary_gap():
    s = pd.DataFrame({"step": range(6), "tokens": [10, 20, 40, 80, 160, 320],
                      "max_induction": [0.05, 0.05, 0.1, 0.8, 0.9, 0.9], "icl_score": [0, 0.1, 0.1, -0.3, -0.9, -1.0]})
    out = ih.phase_change_summary(s)
    assert out["induction_transition_tokens"] == 80 and out["icl_transition_tokens"] == 160
    assert out["transition_gap_checkpoints"] == 1 and out["final_max_induction"] == 0.9


def test_probes_shape_and_pool():
    pool = [5, 6, 7, 8]
    p = ih.make_probes(pool, bos_id=0, lengths=(3, 6), n=10, seed=1)
    assert p["L3"].shape == (10, 7) and p["L6"].shape == (10, 13)
    assert (p["L6"][:, 0] == 0).all() and set(p["L6"][:, 1:].unique().tolist()) <= set(pool)
    assert (p["L6"][:, 1:7] == p["L6"][:, 7:]).all()
    assert (ih.make_probes(pool, 0, (3,), 10, 1)["L3"] == p["L3"]).all()


def test_config_validation():
    with pytest.raises(ValueError, match="icl_early < icl_late"):
        ih.InductionConfig.from_config({**CFG.__dict__, "icl_early": 5, "icl_late": 5})
    with pytest.raises(ValueError, match="n_probes"):
        ih.InductionConfig.from_config({**CFG.__dict__, "n_probes": 0})


def test_analyses_on_the_hand_built_model(hand_model):
    probes = {"L7": distinct_probes(6, 7, 12, seed=0)}
    reference = {"L7": distinct_probes(6, 7, 12, seed=1)}
    ind, prev = ih.probe_scores(hand_model, probes)
    scores = ih.heads_frame({"induction": ind, "prev_token": prev})
    heads = ih.circuit_heads(scores, CFG)
    assert heads == {"induction": [(1, 0)], "previous-token": [(0, 0)], "control": [(0, 1), (1, 1)]}
    ablation = ih.ablation_study(hand_model, probes, reference, heads, CFG)
    summary = ih.ablation_summary(ablation)
    assert summary["ablation_zero_induction_increase"] > 1 and summary["ablation_zero_ratio"] > 100
    # The previous-token head is upstream in the circuit: ablating it breaks induction too.
    zero = ablation[ablation.method == "zero"].set_index("kind")
    assert zero.loc["previous-token", "repeated_half_loss"] > zero.loc["none", "repeated_half_loss"] + 1
    table, comp = ih.composition_study(hand_model, scores.fillna(0), CFG)
    assert comp["kcomp_top_pair"] == "0.0->1.0"
    assert comp["kcomp_top_is_prev_to_induction"] == 1.0
    loss = ih.per_position_loss(hand_model, probes)
    assert loss[loss.half == 2].loss.mean() < loss[loss.half == 1].loss.mean()
