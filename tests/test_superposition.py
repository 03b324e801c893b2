"""Toy models of superposition (Elhage et al. 2022): measures on hand-built weights, the data, the hand-written
gradients, and the paper's qualitative outcomes on small seeded runs."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch

from mechrepro.io import load_tensors, save_tensors
from mechrepro.plots import superposition as P
from mechrepro.sae import superposition as S
from mechrepro.sae.superposition import SuperpositionConfig


def _polygon(k: int, radius: float = 1.0) -> torch.Tensor:
    """[1 2 k] k unit-ish vectors evenly spaced on a circle."""
    a = torch.arange(k) * 2 * math.pi / k
    return radius * torch.stack([torch.cos(a), torch.sin(a)])[None]


# --- measures -------------------------------------------------------------------------------------------------


def test_orthogonal_pair_and_an_unused_feature():
    W = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])  # 3 features in 2 dimensions, the third unused
    assert S.dims_per_feature(W).item() == pytest.approx(1.0)
    assert S.feature_dimensionality(W)[0].tolist() == pytest.approx([1.0, 1.0, 0.0])
    assert S.superposition_measure(W)[0].tolist() == pytest.approx([0.0, 0.0, 0.0])
    assert S.n_represented(W).item() == 2
    assert S.pair_angle_deg(W[0]) == pytest.approx(90.0)


@pytest.mark.parametrize("radius", [1.0, 1.3])
def test_pentagon(radius):
    W = _polygon(5, radius)
    # D* = m / ||W||_F² = 2 / 5 for unit norms; D_i = 1 / (1 + 2cos²72° + 2cos²144°) = 2/5 at any radius
    assert S.dims_per_feature(W).item() == pytest.approx(2 / (5 * radius**2))
    assert S.feature_dimensionality(W)[0].tolist() == pytest.approx([0.4] * 5, abs=1e-5)
    assert S.superposition_measure(W)[0].tolist() == pytest.approx([1.5 * radius**2] * 5, abs=1e-5)
    assert S.polygon_angle_error(W[0], n_sides=5) == pytest.approx(0.0, abs=1e-3)
    assert S.n_represented(W).item() == 5


def test_polygon_error_sees_a_missing_feature():
    square = torch.cat([_polygon(4), torch.zeros(1, 2, 1)], -1)  # 4 represented, a fifth at zero
    assert S.polygon_angle_error(square[0], n_sides=5) == pytest.approx(18.0, abs=1e-3)  # |90° - 72°|
    assert S.polygon_angle_error(torch.zeros(2, 5)) == 360.0


def test_antipodal_pair_and_phase_rules():
    W = torch.tensor([[[1.0, -1.0]], [[1.0, 0.1]], [[0.1, 1.0]], [[1.0, 1.0]], [[0.2, 0.2]]])  # [cell 1 2]
    assert S.dims_per_feature(W[:1]).item() == pytest.approx(0.5)
    assert S.feature_dimensionality(W[:1])[0].tolist() == pytest.approx([0.5, 0.5])
    assert S.superposition_measure(W[:1])[0].tolist() == pytest.approx([1.0, 1.0])
    labels = [S.PHASE_LABELS[c] for c in S.classify_phase(W).tolist()]
    assert labels == ["superposition", "not represented", "dedicated dimension", "other", "not represented"]


# --- data, model, gradients -----------------------------------------------------------------------------------


def test_feature_sparsity_and_values():
    density = torch.tensor([[1.0, 0.3, 0.02]])
    x = S.sample_features(density, 200_000, torch.Generator().manual_seed(0))  # [1 batch 3]
    active = (x > 0).float().mean(1)[0]
    assert active.tolist() == pytest.approx([1.0, 0.3, 0.02], abs=0.004)
    assert x.min() >= 0 and x.max() <= 1
    for f in range(3):  # the active values are uniform on [0, 1]
        v = x[0, :, f][x[0, :, f] > 0]
        assert v.mean().item() == pytest.approx(0.5, abs=0.01)
        assert (v < 0.25).float().mean().item() == pytest.approx(0.25, abs=0.015)


def test_hand_written_gradients_match_autograd():
    g = torch.Generator().manual_seed(1)
    W = torch.randn(3, 2, 6, generator=g, requires_grad=True)
    b = (0.1 * torch.randn(3, 6, generator=g)).requires_grad_()
    x = S.sample_features(torch.full((3, 6), 0.4), 64, g)
    imp = 0.9 ** torch.arange(6.0).expand(3, -1)
    loss = S.toy_loss(W, b, x, imp)
    loss.sum().backward()
    mine, dW, db = S._loss_and_grads(W.detach(), b.detach(), x, imp)
    torch.testing.assert_close(mine, loss.detach())
    torch.testing.assert_close(dW, W.grad)
    torch.testing.assert_close(db, b.grad)


def test_training_lowers_the_loss_and_is_deterministic():
    density, imp = torch.full((2, 6), 0.3), torch.ones(2, 6)
    threads = torch.get_num_threads()
    a = S.train_toy_models(density, imp, 2, n_steps=200, batch_size=256, lr=1e-2, seed=3, n_replicates=2)
    b = S.train_toy_models(density, imp, 2, n_steps=200, batch_size=256, lr=1e-2, seed=3, n_replicates=2)
    assert (a.history[-1] < 0.8 * a.history[0]).all()
    assert torch.equal(a.W, b.W) and torch.equal(a.loss, b.loss)
    assert torch.equal(a.loss, a.replicate_losses.min(1).values)
    assert torch.get_num_threads() == threads  # training runs on one thread, then gives the setting back


# --- the paper's outcomes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_geometry_dense_pair_sparse_pentagon(seed):
    geo = S.geometry(SuperpositionConfig(seed=seed))
    dense, sparse = geo["W"]
    assert S.n_represented(dense[None]).item() == 2
    assert abs(S.pair_angle_deg(dense) - 90) < 5
    assert S.feature_norms(dense[None])[0, :2].min() > 0.9  # the two most important features
    assert S.n_represented(sparse[None]).item() == 5
    assert S.polygon_angle_error(sparse, n_sides=5) < 5


def test_sweep_superposition_only_when_sparse():
    sweep = S.sparsity_sweep(SuperpositionConfig(sparsities=(0.0, 0.99)))
    assert sweep["dims_per_feature"][0] >= 0.9
    assert sweep["n_represented"][0] <= 5 < sweep["n_represented"][1]
    assert sweep["superposition"][0][:5].max() < 0.05  # the dense model's five features are orthogonal


def test_phase_diagram_corners():
    cfg = SuperpositionConfig(phase_sparsities=3, phase_importances=3, phase_importance_range=(0.3, 3.0))
    phase = S.phase_diagram(cfg)  # rows: importance 0.3, 1, 3; columns: density 1, 0.1, 0.01
    codes = phase["phase"]
    assert S.PHASE_LABELS[codes[0, 0]] == "not represented"  # dense, the extra feature less important
    assert S.PHASE_LABELS[codes[2, 0]] == "dedicated dimension"  # dense, the extra feature more important
    assert S.PHASE_LABELS[codes[1, 2]] == "superposition"  # sparse, equal importance


# --- config, run, figures -------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad, key", [
    ({"n_hidden": 0}, "n_hidden"),
    ({"n_hidden": 20}, "n_hidden"),
    ({"sparsities": (0.9, 0.5)}, "sparsities"),
    ({"sparsities": (0.0, 1.0)}, "sparsities"),
    ({"geometry_sparsities": (0.9, 0.1)}, "geometry_sparsities"),
    ({"phase_importance_range": (2.0, 10.0)}, "phase_importance_range"),
    ({"importance_decay": 0.0}, "importance_decay"),
    ({"lr": 2.0}, "lr"),
    ({"n_steps": 1.5}, "n_steps"),
])
def test_config_errors_name_the_key(bad, key):
    with pytest.raises(ValueError, match=rf"superposition\.{key}\b"):
        SuperpositionConfig(**bad)


def test_from_config():
    cfg = SuperpositionConfig.from_config({"n_features": 8, "n_hidden": 3, "sparsities": [0.0, 0.9]})
    assert cfg.sparsities == (0.0, 0.9) and cfg.n_features == 8
    hash(cfg)
    with pytest.raises(ValueError, match=r"superposition\.n_hiden: unknown key"):
        SuperpositionConfig.from_config({"n_hiden": 3})


@pytest.fixture(scope="module")
def small_run():
    cfg = SuperpositionConfig(n_features=6, n_hidden=2, sparsities=(0.0, 0.5, 0.9), dimensionality_points=3,
                              phase_sparsities=3, phase_importances=3, n_steps=30, batch_size=64, eval_batch_size=256)
    return S.run_superposition(cfg)


def test_run_summary(small_run):
    summary = small_run["summary"]
    for key in ("dims_per_feature_dense", "dims_per_feature_sparse", "n_represented_dense", "n_represented_sparse",
                "n_hidden", "pentagon_max_angle_error_deg", "dense_pair_orthogonality_error_deg",
                "phase_cells_superposition", "phase_cells_not_represented", "phase_cells_dedicated_dimension"):
        assert "superposition." + key in summary
    assert all(isinstance(v, int | float) and math.isfinite(v) for v in summary.values())
    assert sum(v for k, v in summary.items() if k.startswith("superposition.phase_cells_")) == 9
    assert small_run["phase"]["W"].shape == (3, 3, 1, 2)


@pytest.mark.parametrize("name", ["sparsity_sweep", "dimensionality", "geometry", "phase_diagram"])
def test_figures_write_png(small_run, tmp_path, name):
    piece = {"sparsity_sweep": "sweep", "dimensionality": "dimensionality", "geometry": "geometry",
             "phase_diagram": "phase"}[name]
    path = tmp_path / f"{name}.png"
    getattr(P, name)(small_run[piece], path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000


def test_dimensionality_figure_with_sweep_overlay(small_run, tmp_path):
    P.dimensionality(small_run["dimensionality"], tmp_path / "d.png", sweep=small_run["sweep"])
    assert (tmp_path / "d.png").stat().st_size > 1000


def test_saved_tensors_round_trip_to_all_figures(small_run, tmp_path):
    save_tensors(tmp_path / "t.safetensors", S.tensors_for_saving(small_run))
    loaded = load_tensors(tmp_path / "t.safetensors")
    assert torch.equal(S.split_saved(loaded)["phase"]["phase"], small_run["phase"]["phase"])
    out = SimpleNamespace(**{k: tmp_path / f"{k}.png" for k in ("sweep", "dimensionality", "geometry", "phase")})
    P.all_figures(loaded, small_run["summary"], out)
    assert all(p.stat().st_size > 1000 for p in vars(out).values())


def test_config_is_replaceable():
    cfg = dataclasses.replace(SuperpositionConfig(), seed=5)
    assert cfg.seed == 5
