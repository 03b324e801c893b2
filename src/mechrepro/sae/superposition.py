"""Toy models of superposition: Elhage et al. 2022, *Toy Models of Superposition* (transformer-circuits.pub).

The paper's ReLU output model: n sparse features x (each 0 with probability S, the sparsity, else uniform on
[0, 1]) are squeezed into m < n hidden dimensions, h = W x, and read back as x' = ReLU(Wᵀ h + b); the loss is
Σ_i I_i (x_i − x'_i)² with importance I_i = decay^i. Many models ("instances") train at once on a leading
dimension, as the paper's code does, so that a whole grid of sparsities is one training loop.

What is reproduced (the paper's sections in brackets):

* the sparsity sweep, n = 20, m = 5, I_i = 0.9^i [§"Demonstrating Superposition", basic results: WᵀW and ||W_i||
  per sparsity]: dense models keep the m most important features on orthogonal directions; sparse ones represent
  more features than dimensions, in superposition;
* dimensions per feature D* = m / ||W||_F² and per-feature dimensionality D_i = ||W_i||² / Σ_j (Ŵ_i · W_j)²
  against 1/(1 − S), equal importance [§"The Geometry of Superposition": uniform superposition, feature
  dimensionality];
* 5 features in 2 dimensions, importance 0.9^i as in the paper's code for its opening figure [§"Introduction"]:
  dense -> the two most important features on an orthogonal pair, sparse -> all five on a pentagon;
* the 2-features-in-1-dimension phase diagram over sparsity x relative importance [§"Superposition as a Phase
  Change"].

These tiny models have local minima (a feature left at zero that a better solution represents), so each condition
trains a few seeded replicates side by side and keeps the one with the lowest loss on held-out data: the pictures
are the optimiser's best answer rather than one unlucky initialisation. Gradients are written by hand (checked
against autograd in the tests): on a small CPU, autograd's bookkeeping nearly doubles the cost of a step.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields

import torch
from jaxtyping import Float
from torch import Tensor

REPRESENTED = 0.5  # ||W_i|| above which a feature counts as represented (the paper's trained norms are ~0 or ~1)
PHASE_LABELS = ("not represented", "dedicated dimension", "superposition", "other")
EVAL_CHUNK = 4096


@dataclass(frozen=True)
class SuperpositionConfig:
    """The ``monosemanticity.superposition`` section of a scale config."""

    n_features: int = 20
    n_hidden: int = 5
    sparsities: tuple[float, ...] = (0.0, 0.7, 0.9, 0.97, 0.99, 0.997, 0.999)  # the basic-results figure's columns
    importance_decay: float = 0.9
    dimensionality_points: int = 8  # equal-importance sweep, log-spaced in 1/(1-S) up to max(sparsities)
    # 5 features in 2 dimensions, (dense, sparse); decay 0.9 and density 1/20 are the paper's code for its first figure.
    # Equal importance would leave the dense model no two features to prefer (see geometry()).
    geometry_sparsities: tuple[float, float] = (0.0, 0.95)
    geometry_importance_decay: float = 0.9
    phase_sparsities: int = 10  # grid columns: density 1-S log-spaced from 1 to 1 - phase_max_sparsity
    phase_max_sparsity: float = 0.99
    phase_importances: int = 10  # grid rows: the extra feature's importance log-spaced over phase_importance_range
    phase_importance_range: tuple[float, float] = (0.1, 10.0)
    phase_batch_size: int = 64  # 3 parameters per model: small batches, many replicates (local minima)
    phase_replicates: int = 8
    sweep_replicates: int = 2  # sparsity and dimensionality sweeps, feature geometry
    n_steps: int = 2000
    batch_size: int = 1024
    eval_batch_size: int = 16384
    lr: float = 1e-2
    seed: int = 0

    def __post_init__(self):
        p = "monosemanticity.superposition"
        for k in ("n_features", "n_hidden", "dimensionality_points", "phase_sparsities", "phase_importances",
                  "phase_batch_size", "phase_replicates", "sweep_replicates", "n_steps", "batch_size",
                  "eval_batch_size"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{p}.{k} must be an integer >= 1, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"{p}.seed must be an integer >= 0, got {self.seed!r}")
        if self.n_hidden >= self.n_features:
            raise ValueError(f"{p}.n_hidden must be < n_features ({self.n_features}) for superposition to be "
                             f"possible, got {self.n_hidden}")
        if len(self.sparsities) < 2 or any(not 0 <= s < 1 for s in self.sparsities) \
                or list(self.sparsities) != sorted(set(self.sparsities)):
            raise ValueError(f"{p}.sparsities must be >= 2 increasing values in [0, 1), got {self.sparsities!r}")
        g = self.geometry_sparsities
        if len(g) != 2 or not 0 <= g[0] < g[1] < 1:
            raise ValueError(f"{p}.geometry_sparsities must be (dense, sparse) with 0 <= dense < sparse < 1, got {g!r}")
        if not 0 < self.phase_max_sparsity < 1:
            raise ValueError(f"{p}.phase_max_sparsity must be in (0, 1), got {self.phase_max_sparsity}")
        r = self.phase_importance_range
        if len(r) != 2 or not 0 < r[0] < 1 < r[1]:
            raise ValueError(f"{p}.phase_importance_range must be (low, high) with 0 < low < 1 < high, got {r!r}")
        for k in ("importance_decay", "geometry_importance_decay"):
            if not 0 < getattr(self, k) <= 1:
                raise ValueError(f"{p}.{k} must be in (0, 1], got {getattr(self, k)}")
        if not 0 < self.lr < 1:
            raise ValueError(f"{p}.lr must be in (0, 1), got {self.lr}")

    @classmethod
    def from_config(cls, section: dict) -> SuperpositionConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ValueError(f"monosemanticity.superposition.{unknown[0]}: unknown key "
                             f"(allowed: {', '.join(sorted(known))})")
        # YAML gives lists; the dataclass is frozen and hashable, so sequences become tuples
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in section.items()})


# --- the model ---------------------------------------------------------------------------------------------


def sample_features(density: Float[Tensor, "inst feat"], batch_size: int, generator: torch.Generator,
                    out: Tensor | None = None) -> Float[Tensor, "inst batch feat"]:
    """Each feature is uniform on [0, 1] with probability ``density`` = 1 − S, else 0. One uniform draw u serves
    both: u > S happens with probability 1 − S, and then (u − S) / (1 − S) is again uniform on [0, 1] (half the
    random numbers of two draws). ``out``: a [inst batch feat] buffer to fill instead of a new tensor."""
    d = density[:, None, :]
    u = torch.empty(density.shape[0], batch_size, density.shape[1]) if out is None else out  # [inst batch feat]
    return u.uniform_(generator=generator).sub_(1 - d).div_(d).clamp_min_(0)


def toy_forward(W: Float[Tensor, "inst hidden feat"], b: Float[Tensor, "inst feat"],
                x: Float[Tensor, "inst batch feat"]) -> Float[Tensor, "inst batch feat"]:
    h = torch.bmm(x, W.transpose(1, 2))  # [inst batch hidden]
    return torch.relu(torch.baddbmm(b[:, None, :], h, W))


def toy_loss(W: Float[Tensor, "inst hidden feat"], b: Float[Tensor, "inst feat"], x: Float[Tensor, "inst batch feat"],
             importance: Float[Tensor, "inst feat"]) -> Float[Tensor, " inst"]:
    """Σ_i I_i (x_i − x'_i)², averaged over the batch: one loss per instance."""
    return (importance[:, None, :] * (x - toy_forward(W, b, x)) ** 2).sum(-1).mean(-1)


class _Workspace:
    """Buffers for one training step, allocated once: a fresh megabyte-sized tensor for every operation costs page
    faults, and reusing buffers makes a step about 1.7x faster on CPU."""

    def __init__(self, n_inst: int, batch: int, n_hidden: int, n_feat: int):
        self.x, self.z, self.r, self.ir = (torch.empty(n_inst, batch, n_feat) for _ in range(4))
        self.h, self.dh = torch.empty(n_inst, batch, n_hidden), torch.empty(n_inst, batch, n_hidden)
        self.off = torch.empty(n_inst, batch, n_feat, dtype=torch.bool)
        self.dW, self.dW2 = torch.empty(n_inst, n_hidden, n_feat), torch.empty(n_inst, n_hidden, n_feat)


def _loss_and_grads(W: Tensor, b: Tensor, x: Tensor, importance: Tensor, ws: _Workspace | None = None
                    ) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`toy_loss` and its gradients, written out (z = Wᵀ(Wx) + b uses W twice, so dW has two terms). The
    gradient of W lives in ``ws``: it is overwritten by the next call."""
    n_inst, batch, n_feat = x.shape
    ws = ws or _Workspace(n_inst, batch, W.shape[1], n_feat)
    h = torch.bmm(x, W.transpose(1, 2), out=ws.h)  # [inst batch hidden]
    z = torch.baddbmm(b[:, None, :], h, W, out=ws.z)  # [inst batch feat]
    r = torch.clamp_min(z, 0, out=ws.r).sub_(x)  # x' - x
    ir = torch.mul(r, importance[:, None, :], out=ws.ir)
    loss = torch.linalg.vecdot(ir.view(n_inst, -1), r.view(n_inst, -1)) / batch  # [inst]
    dz = ir.masked_fill_(torch.le(z, 0, out=ws.off), 0).mul_(2.0 / batch)  # [inst batch feat]; ir is not needed again
    dh = torch.bmm(dz, W.transpose(1, 2), out=ws.dh)  # [inst batch hidden]
    dW = torch.bmm(h.transpose(1, 2), dz, out=ws.dW).add_(torch.bmm(dh.transpose(1, 2), x, out=ws.dW2))
    return loss, dW, dz.sum(1)


@dataclass(frozen=True)
class ToyModels:
    """The best replicate of each condition."""

    W: Float[Tensor, "cond hidden feat"]
    b: Float[Tensor, "cond feat"]
    loss: Float[Tensor, " cond"]  # held-out loss
    replicate_losses: Float[Tensor, "cond rep"]
    history: Float[Tensor, "checkpoint cond"]  # training loss of the kept replicate, mean over each stretch of steps


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one thread, then restore the setting. These tensors are at most a few megabytes: a second
    thread gains ~1.2x on an idle machine, but when another process holds the cores the threads wait on each
    other and a run took 10-15x longer (measured on a shared 2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def train_toy_models(density: Float[Tensor, "cond feat"], importance: Float[Tensor, "cond feat"], n_hidden: int,
                     n_steps: int, batch_size: int, lr: float, seed: int, n_replicates: int = 1,
                     eval_batch_size: int = 8192, n_checkpoints: int = 20) -> ToyModels:
    """Train ``n_replicates`` seeded models per condition at once (Adam, cosine-decayed learning rate) and keep the
    one with the lowest loss on a held-out batch shared by the replicates of a condition."""
    gen = torch.Generator().manual_seed(seed)
    n_cond, n_feat = density.shape
    dens = density.float().repeat_interleave(n_replicates, 0)  # [inst feat], inst = cond * rep
    imp = importance.float().repeat_interleave(n_replicates, 0)
    std = math.sqrt(2 / (n_feat + n_hidden))  # Xavier normal, as the paper's code initialises W
    W = torch.randn(len(dens), n_hidden, n_feat, generator=gen).mul_(std)  # [inst hidden feat]
    b = torch.zeros(len(dens), n_feat)  # [inst feat]
    opt = torch.optim.Adam([W, b], lr=lr)
    # The cosine decay lets the sparse conditions, whose gradients are noisy, settle instead of jittering.
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * s / n_steps)))
    every = max(1, n_steps // n_checkpoints)
    history, running = [], torch.zeros(len(dens))
    ws = _Workspace(len(dens), batch_size, n_hidden, n_feat)
    with _one_thread():
        for step in range(n_steps):
            x = sample_features(dens, batch_size, gen, out=ws.x)
            loss, W.grad, b.grad = _loss_and_grads(W, b, x, imp, ws)
            opt.step()
            sched.step()
            running += loss
            if (step + 1) % every == 0:
                history.append(running / every)
                running = torch.zeros(len(dens))
    held_out = torch.zeros(n_cond, n_replicates)
    with torch.no_grad(), _one_thread():  # in chunks: the eval batch of every instance need not fit in memory
        for start in range(0, eval_batch_size, EVAL_CHUNK):
            x = sample_features(density.float(), min(EVAL_CHUNK, eval_batch_size - start), gen)
            # the replicates of a condition see the same held-out data, so their losses compare without sampling noise
            loss = toy_loss(W, b, x.repeat_interleave(n_replicates, 0), imp).view(n_cond, n_replicates)
            held_out += loss * (x.shape[1] / eval_batch_size)
    best = held_out.argmin(1) + torch.arange(n_cond) * n_replicates  # [cond] instance index
    hist = torch.stack(history)[:, best] if history else torch.zeros(0, n_cond)
    return ToyModels(W.detach()[best].clone(), b.detach()[best].clone(), held_out.min(1).values, held_out, hist)


# --- measures (Elhage et al. §"Feature dimensionality") ------------------------------------------------------


def feature_norms(W: Float[Tensor, "inst hidden feat"]) -> Float[Tensor, "inst feat"]:
    return W.norm(dim=1)


def n_represented(W: Float[Tensor, "inst hidden feat"], threshold: float = REPRESENTED) -> Tensor:
    """[inst] number of features with ||W_i|| > threshold."""
    return (feature_norms(W) > threshold).sum(-1)


def dims_per_feature(W: Float[Tensor, "inst hidden feat"]) -> Float[Tensor, " inst"]:
    """D* = m / ||W||_F²: ||W||_F² counts the represented features when each has norm ~1."""
    return W.shape[1] / W.pow(2).sum((1, 2))


def _overlaps(W: Tensor) -> Tensor:
    """[inst feat feat] (Ŵ_i · W_j)²; rows of features with W_i = 0 are 0."""
    unit = W / feature_norms(W).clamp_min(1e-8)[:, None, :]
    return torch.bmm(unit.transpose(1, 2), W) ** 2


def feature_dimensionality(W: Float[Tensor, "inst hidden feat"]) -> Float[Tensor, "inst feat"]:
    """D_i = ||W_i||² / Σ_j (Ŵ_i · W_j)² (the j = i term is ||W_i||²); 0 for a feature with W_i = 0."""
    num = feature_norms(W) ** 2
    return torch.where(num > 1e-12, num / _overlaps(W).sum(-1).clamp_min(1e-12), 0.0)


def superposition_measure(W: Float[Tensor, "inst hidden feat"]) -> Float[Tensor, "inst feat"]:
    """Σ_{j≠i} (Ŵ_i · W_j)²: how much of other features lies along feature i (0: it has its own direction)."""
    o = _overlaps(W)
    return o.sum(-1) - torch.diagonal(o, dim1=1, dim2=2)


def angles_deg(W: Float[Tensor, "inst 2 feat"]) -> Float[Tensor, "inst feat"]:
    """Direction of each feature in a 2-dimensional hidden space, degrees in [0, 360)."""
    return torch.rad2deg(torch.atan2(W[:, 1], W[:, 0])) % 360


def polygon_angle_error(W: Float[Tensor, "2 feat"], n_sides: int | None = None) -> float:
    """Largest |gap − 360°/n_sides| between consecutive directions of the represented features of a 2-D model:
    0 for a regular polygon (a pentagon, n_sides = 5: gaps of 72°). ``n_sides`` defaults to the number represented;
    a missing feature leaves a wide gap, so a square scores 18° against a pentagon. 360 (larger than any gap error)
    when fewer than 2 features are represented."""
    keep = feature_norms(W[None])[0] > REPRESENTED
    if int(keep.sum()) < 2:
        return 360.0
    a = torch.sort(angles_deg(W[None, :, keep])[0]).values
    gaps = torch.diff(torch.cat([a, a[:1] + 360]))
    return float((gaps - 360 / (n_sides or len(a))).abs().max())


def pair_angle_deg(W: Float[Tensor, "2 feat"]) -> float:
    """Angle between the two largest-norm features (90° for the dense model's orthogonal pair)."""
    top = feature_norms(W[None])[0].topk(2).indices
    u = W[:, top] / W[:, top].norm(dim=0).clamp_min(1e-8)
    return float(torch.rad2deg(torch.arccos((u[:, 0] @ u[:, 1]).clamp(-1, 1))))


def classify_phase(W: Float[Tensor, "inst 1 2"]) -> Tensor:
    """Codes into :data:`PHASE_LABELS` for 2 features in 1 dimension; feature 1 is the "extra" feature whose
    importance varies. Rules: the extra feature is *not represented* if |W_1| <= 0.5; it has a *dedicated
    dimension* if it is represented and feature 0 is not; *superposition* if both are represented with opposite
    signs (an antipodal pair); *other* for anything else (both with one sign: not expected, but counted)."""
    rep = W[:, 0].abs() > REPRESENTED  # [inst feat]
    antipodal = W[:, 0, 0] * W[:, 0, 1] < 0
    code = torch.full((len(W),), 3, dtype=torch.long)
    code[~rep[:, 1]] = 0
    code[rep[:, 1] & ~rep[:, 0]] = 1
    code[rep[:, 1] & rep[:, 0] & antipodal] = 2
    return code


# --- the experiments ----------------------------------------------------------------------------------------


def _measure(models: ToyModels, sparsity: Tensor, importance: Tensor) -> dict[str, Tensor]:
    W = models.W
    return {"sparsity": sparsity, "importance": importance, "W": W, "b": models.b, "loss": models.loss,
            "replicate_losses": models.replicate_losses, "history": models.history,
            "dims_per_feature": dims_per_feature(W), "n_represented": n_represented(W), "norms": feature_norms(W),
            "superposition": superposition_measure(W), "feature_dimensionality": feature_dimensionality(W)}


def _sweep(cfg: SuperpositionConfig, sparsity: Tensor, importance: Tensor, n_hidden: int, seed: int
           ) -> dict[str, Tensor]:
    density = (1 - sparsity)[:, None].expand(-1, len(importance))
    models = train_toy_models(density, importance.expand(len(sparsity), -1), n_hidden, cfg.n_steps, cfg.batch_size,
                              cfg.lr, seed, cfg.sweep_replicates, cfg.eval_batch_size)
    return _measure(models, sparsity, importance)


def sparsity_sweep(cfg: SuperpositionConfig) -> dict[str, Tensor]:
    """Basic results: n_features into n_hidden with importance decay^i, one model per sparsity."""
    imp = cfg.importance_decay ** torch.arange(cfg.n_features, dtype=torch.float32)
    return _sweep(cfg, torch.tensor(cfg.sparsities, dtype=torch.float64), imp, cfg.n_hidden, cfg.seed)


def dimensionality_sweep(cfg: SuperpositionConfig) -> dict[str, Tensor]:
    """Uniform superposition / feature dimensionality: equal importance, 1/(1−S) log-spaced from 1 to
    1/(1 − max sparsity)."""
    s = 1 - torch.logspace(0, math.log10(1 - max(cfg.sparsities)), cfg.dimensionality_points, dtype=torch.float64)
    return _sweep(cfg, s, torch.ones(cfg.n_features), cfg.n_hidden, cfg.seed + 1)


def geometry(cfg: SuperpositionConfig) -> dict[str, Tensor]:
    """5 features in 2 dimensions at the dense and the sparse sparsity (the paper's opening figure).

    Importance decays (0.9^i by default, as the paper's code): with equal importance and dense inputs no pair of
    features is preferred, and the model does better than any orthogonal pair by spreading W over several features
    to carry their shared mean (E[x_i] = 1/2), so "the m most important features" has no answer there."""
    imp = cfg.geometry_importance_decay ** torch.arange(5, dtype=torch.float32)
    out = _sweep(cfg, torch.tensor(cfg.geometry_sparsities, dtype=torch.float64), imp, 2, cfg.seed + 2)
    out["angles_deg"] = angles_deg(out["W"])
    return out


def phase_diagram(cfg: SuperpositionConfig) -> dict[str, Tensor]:
    """§"Phase change": 2 features in 1 dimension, feature 0 of importance 1, feature 1 (the extra feature) of
    importance r; grid [importance sparsity], all cells (and their replicates) trained at once."""
    density = torch.logspace(0, math.log10(1 - cfg.phase_max_sparsity), cfg.phase_sparsities, dtype=torch.float64)
    lo, hi = cfg.phase_importance_range
    rel = torch.logspace(math.log10(lo), math.log10(hi), cfg.phase_importances, dtype=torch.float64)
    r, d = torch.meshgrid(rel, density, indexing="ij")  # [importance sparsity]
    imp = torch.stack([torch.ones(r.numel(), dtype=r.dtype), r.flatten()], -1)  # [cell 2]
    models = train_toy_models(d.flatten()[:, None].expand(-1, 2), imp, 1, cfg.n_steps, cfg.phase_batch_size, cfg.lr,
                              cfg.seed + 3, cfg.phase_replicates, cfg.eval_batch_size)
    shape = (cfg.phase_importances, cfg.phase_sparsities)
    return {"sparsity": 1 - density, "relative_importance": rel, "W": models.W.view(*shape, 1, 2),
            "b": models.b.view(*shape, 2), "loss": models.loss.view(shape),
            "phase": classify_phase(models.W).view(shape)}


def _mean_superposition(sweep: dict[str, Tensor], i: int) -> float:
    """Mean Σ_{j≠i} (Ŵ_i·W_j)² over the represented features of model i: ~0 when each has its own direction."""
    rep = sweep["norms"][i] > REPRESENTED
    return float(sweep["superposition"][i][rep].mean()) if rep.any() else 0.0


def run_superposition(cfg: SuperpositionConfig) -> dict:
    """All four experiments, their tensors for the figures and a flat ``summary`` of scalar metrics ("dense" is the
    sweep's first sparsity, "sparse" its last)."""
    t0 = time.perf_counter()
    sweep, dims, geo, phase = sparsity_sweep(cfg), dimensionality_sweep(cfg), geometry(cfg), phase_diagram(cfg)
    wall = time.perf_counter() - t0
    k = "superposition."
    summary = {
        k + "n_features": cfg.n_features, k + "n_hidden": cfg.n_hidden,
        k + "sparsity_dense": float(sweep["sparsity"][0]), k + "sparsity_sparse": float(sweep["sparsity"][-1]),
        k + "dims_per_feature_dense": float(sweep["dims_per_feature"][0]),
        k + "dims_per_feature_sparse": float(sweep["dims_per_feature"][-1]),
        k + "n_represented_dense": int(sweep["n_represented"][0]),
        k + "n_represented_sparse": int(sweep["n_represented"][-1]),
        k + "mean_superposition_dense": _mean_superposition(sweep, 0),
        k + "mean_superposition_sparse": _mean_superposition(sweep, -1),
        k + "loss_dense": float(sweep["loss"][0]), k + "loss_sparse": float(sweep["loss"][-1]),
        k + "dimensionality_dims_per_feature_dense": float(dims["dims_per_feature"][0]),
        k + "dimensionality_dims_per_feature_sparse": float(dims["dims_per_feature"][-1]),
        k + "geometry_sparsity_dense": float(geo["sparsity"][0]),
        k + "geometry_sparsity_sparse": float(geo["sparsity"][1]),
        k + "dense_pair_n_represented": int(geo["n_represented"][0]),
        k + "dense_pair_angle_deg": pair_angle_deg(geo["W"][0]),
        k + "dense_pair_orthogonality_error_deg": abs(90 - pair_angle_deg(geo["W"][0])),
        k + "pentagon_n_represented": int(geo["n_represented"][1]),
        k + "pentagon_max_angle_error_deg": polygon_angle_error(geo["W"][1], n_sides=5),
        # D* = m/||W||_F² falls below 2/5 because sparse models grow ||W_i|| past 1; D_i is scale-free (2/5 for a
        # regular pentagon whatever its size)
        k + "pentagon_dims_per_feature": float(geo["dims_per_feature"][1]),
        k + "pentagon_mean_feature_dimensionality": float(geo["feature_dimensionality"][1].mean()),
        k + "phase_n_cells": int(phase["phase"].numel()),
    }
    for code, label in enumerate(PHASE_LABELS):
        summary[k + "phase_cells_" + label.replace(" ", "_")] = int((phase["phase"] == code).sum())
    return {"sweep": sweep, "dimensionality": dims, "geometry": geo, "phase": phase, "summary": summary,
            "wall_s": wall}


EXPERIMENTS = ("sweep", "dimensionality", "geometry", "phase")


def tensors_for_saving(result: dict) -> dict[str, Tensor]:
    """Every tensor of :func:`run_superposition`'s result under "<experiment>.<name>" (safetensors needs a flat
    dict of tensors that share no memory); :func:`split_saved` undoes it."""
    return {f"{e}.{k}": v.detach().clone().contiguous() for e in EXPERIMENTS for k, v in result[e].items()
            if isinstance(v, Tensor)}


def split_saved(tensors: dict[str, Tensor]) -> dict[str, dict[str, Tensor]]:
    """{"sweep.W": ...} -> {"sweep": {"W": ...}, ...}: the pieces the figures take."""
    out: dict[str, dict[str, Tensor]] = {e: {} for e in EXPERIMENTS}
    for key, v in tensors.items():
        e, name = key.split(".", 1)
        out[e][name] = v
    return out
