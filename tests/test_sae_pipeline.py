"""SAE training with SAELens, saving and loading, and the evaluation of a dictionary against hand-built SAEs with
known answers (Bricken et al. 2023's measures; the corpus's latents as ground truth)."""

import math

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from mechrepro.data.corpus import FAMILIES, ROLES
from mechrepro.sae import evaluate as E
from mechrepro.sae.train import DictionaryConfig, load_sae, mlp_activations, save_sae, train_sae


def _model():
    cfg = HookedTransformerConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=12, n_ctx=10, d_vocab=30,
                                  act_fn="relu", normalization_type="LN", seed=0)
    torch.manual_seed(0)
    return HookedTransformer(cfg, move_to_device=False).eval()


def _identity_sae(d_in: int):
    """ReLU(x) W + ReLU(-x)(-W): d_sae = 2 d_in features that reconstruct every input exactly."""
    from sae_lens import StandardSAE, StandardSAEConfig

    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=2 * d_in))
    eye = torch.eye(d_in)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def test_dictionary_config_names_bad_values():
    with pytest.raises(ValueError, match="expansion"):
        DictionaryConfig(expansion=0, l1_coefficient=1, n_samples=100, batch_size=10, lr=1e-3, seed=0)
    with pytest.raises(ValueError, match="less than one batch"):
        DictionaryConfig(expansion=1, l1_coefficient=1, n_samples=5, batch_size=10, lr=1e-3, seed=0)
    with pytest.raises(ValueError, match="steer_latent"):
        E.EvalConfig(n_docs=4, n_contexts=1, context_window=2, steer_latent="unicorns", steer_scale=1.0)


def test_a_perfect_reconstruction_recovers_all_the_loss():
    model = _model()
    tokens = torch.randint(1, 30, (6, 10), generator=torch.Generator().manual_seed(0))
    acts = mlp_activations(model, tokens)
    assert acts.shape == (6 * 9, 12)  # every position but BOS
    row, feats = E.evaluate_dictionary(model, _identity_sae(12), tokens, acts)
    assert row["fvu"] == pytest.approx(0.0, abs=1e-10)
    assert row["loss_sae"] == pytest.approx(row["loss_clean"], abs=1e-5)
    assert row["ce_recovered"] == pytest.approx(1.0, abs=1e-4)
    assert row["loss_zero_ablation"] != pytest.approx(row["loss_clean"])
    # ReLU neurons are >= 0: the 12 negative-direction features never fire
    assert row["dead_fraction"] == pytest.approx(0.5) and feats.shape == (54, 24)


def test_train_save_load_round_trip(tmp_path):
    g = torch.Generator().manual_seed(0)
    truth = torch.nn.functional.normalize(torch.randn(16, 8, generator=g), dim=1)  # 16 directions in 8 dimensions
    codes = (torch.rand(4096, 16, generator=g) < 0.1) * torch.rand(4096, 16, generator=g)
    acts = codes @ truth
    cfg = DictionaryConfig(expansion=4, l1_coefficient=1.0, n_samples=40_960, batch_size=512, lr=3e-3, seed=0)
    sae = train_sae(acts, cfg)
    assert sae.W_dec.shape == (32, 8)
    save_sae(sae, tmp_path / "x4")
    assert {p.name for p in (tmp_path / "x4").iterdir()} == {"cfg.json", "sae_weights.safetensors"}
    again = load_sae(tmp_path / "x4")
    torch.testing.assert_close(again.encode(acts[:50]), sae.encode(acts[:50]))
    fvu = ((sae.decode(sae.encode(acts)) - acts) ** 2).sum() / ((acts - acts.mean(0)) ** 2).sum()
    assert fvu < 0.5  # it learned something in 80 steps
    with pytest.raises(FileNotFoundError, match="no SAE"):
        load_sae(tmp_path / "missing")
    # Truncated weights: a clear error, and the folder set aside so that the rerun retrains it.
    weights = tmp_path / "x4/sae_weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match="SAE at .*x4 cannot be read.*moved to x4.corrupt; rerun"):
        load_sae(tmp_path / "x4")
    assert not (tmp_path / "x4").exists() and (tmp_path / "x4.corrupt/cfg.json").exists()


def test_latent_labels_follow_the_corpus_roles():
    role = torch.tensor([[0, ROLES.index("io"), ROLES.index("x_yy"), ROLES.index("s2"), 0]])
    family = torch.full_like(role, FAMILIES.index("ioi"))
    family[0, 4] = FAMILIES.index("code")
    lat = {"role": role, "family": family, "is_repeat": torch.tensor([[False, False, True, False, False]])}
    labels = E.latent_labels(lat)
    assert labels["name"].tolist() == [True, False, True, False]  # positions after BOS
    assert labels["year_two_digits"].tolist() == [False, True, False, False]
    assert labels["ioi_subject_repeat"].tolist() == [False, False, True, False]
    assert labels["code"].tolist() == [False, False, False, True]
    assert "place" not in labels  # absent from the sample: no AUROC


def test_steering_to_the_current_value_changes_nothing_and_clamping_high_does():
    model = _model()
    sae = _identity_sae(12)
    tokens = torch.randint(1, 30, (4, 10), generator=torch.Generator().manual_seed(1))
    acts = mlp_activations(model, tokens)
    f = int(E.M.firing_frequency(sae.encode(acts))[:12].argmax())  # a feature that fires
    # feature 12 + f reads -neuron f, which a ReLU neuron never makes positive: clamped to 0 it is unchanged
    same = E.steer(model, sae, 12 + f, 0.0, tokens, torch.tensor([3, 4]))
    assert same["mass_after"] == pytest.approx(same["mass_before"], abs=1e-6)
    assert same["top_after"] == same["top_before"]
    high = E.steer(model, sae, f, 50.0, tokens, torch.tensor([3, 4]))
    assert high["mass_after"] != pytest.approx(high["mass_before"], abs=1e-4)


def test_ground_truth_on_planted_units_with_known_answers():
    """A narrow, exact feature against a broad, leaky neuron: the known AUROC, index, precision and recall of each
    family's best unit (the table the report's "why the AUROCs differ" reads)."""
    g = torch.Generator().manual_seed(0)
    n = 400
    name = torch.zeros(n, dtype=torch.bool)
    name[:100] = True  # 100 name tokens
    neurons = -0.1 * torch.rand(n, 5, generator=g)  # GELU-like: slightly negative everywhere
    neurons[:150, 3] = 1.0 + torch.rand(150, generator=g)  # neuron 3: every name and 50 other tokens
    feats = torch.zeros(n, 7)
    feats[:40, 5] = 2.0  # feature 5: 40 of the names, nothing else
    rows = E.ground_truth({"neurons": neurons, "x4": feats}, {"name": name})
    assert len(rows) == 1 and rows[0]["latent"] == "name" and rows[0]["frequency"] == pytest.approx(0.25)
    r = rows[0]
    assert r["unit_neurons"] == 3 and r["unit_x4"] == 5
    # neuron 3 ranks every name above 250 of the 300 others and mixes them with the other 50: AUROC about 11/12
    assert r["auroc_neurons"] == pytest.approx(float(E.M.auroc(neurons[:, 3], name)))
    assert 0.85 < r["auroc_neurons"] < 0.98
    assert r["auroc_x4"] == pytest.approx(0.5 + 0.4 / 2)  # fires on 40% of the names, never elsewhere; ties count half
    assert (r["precision_neurons"], r["recall_neurons"]) == pytest.approx((100 / 150, 1.0))
    assert (r["precision_x4"], r["recall_x4"]) == pytest.approx((1.0, 0.4))
    # a dictionary whose best units never fire has no precision: the summary's median is None, not NaN (which
    # the JSON writer refuses) and not a crash
    dead = E.ground_truth({"x4": torch.zeros(n, 7)}, {"name": name})[0]
    assert math.isnan(dead["precision_x4"]) and dead["recall_x4"] == 0.0
    assert E._median_defined([dead["precision_x4"]]) is None
    assert E._median_defined([0.2, dead["precision_x4"], 0.4]) == pytest.approx(0.3)
