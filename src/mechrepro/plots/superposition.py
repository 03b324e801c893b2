"""Figures of the toy-models-of-superposition replication (Elhage et al. 2022, *Toy Models of Superposition*).

Each function takes one piece of :func:`mechrepro.sae.superposition.run_superposition`'s result (``result["sweep"]``,
``result["dimensionality"]``, ``result["geometry"]``, ``result["phase"]``; tensors or arrays) and a PNG path;
:func:`all_figures` draws the four from the saved tensors.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from mechrepro.plots import save
from mechrepro.sae.superposition import PHASE_LABELS, REPRESENTED, split_saved

# The paper's "sticky" dimensionalities: tetrahedron 3/4, triangle 2/3, antipodal pair 1/2, pentagon 2/5, ...
STICKY = {1.0: "1", 3 / 4: "3/4", 2 / 3: "2/3", 1 / 2: "1/2", 2 / 5: "2/5", 3 / 8: "3/8", 1 / 3: "1/3"}
PHASE_COLOURS = ("#d9d9d9", "#3b6fb6", "#c8443a", "#222222")  # not represented, dedicated, superposition, other


def _np(t) -> np.ndarray:
    return np.asarray(t, dtype=np.float64)


def _sparsity_label(s: float) -> str:
    return f"S = {s:.3g}"


def sparsity_sweep(sweep: dict, path) -> None:
    """Elhage et al.'s basic results: per sparsity (columns), WᵀW (top: how features interfere; a diagonal block is an
    orthogonal basis) and ||W_i|| per feature (bottom, most important at the top), each bar coloured by the
    feature's superposition Σ_{j≠i} (Ŵ_i·W_j)² (black: a direction of its own; yellow: shared)."""
    W, norms, sup = _np(sweep["W"]), _np(sweep["norms"]), _np(sweep["superposition"])
    sparsity, n_rep, dstar = _np(sweep["sparsity"]), _np(sweep["n_represented"]), _np(sweep["dims_per_feature"])
    n_cond, _, n_feat = W.shape
    fig, axes = plt.subplots(2, n_cond, figsize=(1.9 * n_cond + 1, 4.6), squeeze=False,
                             gridspec_kw={"height_ratios": [1, 1.15]})
    cmap = plt.get_cmap("plasma")
    for c in range(n_cond):
        gram = W[c].T @ W[c]  # [feat feat]
        ax = axes[0, c]
        im = ax.imshow(gram, cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{_sparsity_label(sparsity[c])}\n{int(n_rep[c])}/{n_feat} repr., D* = {dstar[c]:.2f}",
                     fontsize=8)
        ax = axes[1, c]
        # the colour saturates at 1: as much interference as one other unit feature lying fully along this one
        ax.barh(np.arange(n_feat), norms[c], color=cmap(np.clip(sup[c], 0, 1)), height=0.8)
        ax.axvline(REPRESENTED, color="grey", lw=0.6, ls=":")
        ax.set_ylim(n_feat - 0.5, -0.5)
        ax.set_xlim(0, max(1.2, float(norms.max()) * 1.05))
        ax.set_yticks([])
        ax.set_xlabel("||W_i||", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0, 0].set_ylabel("WᵀW")
    axes[1, 0].set_ylabel("features (importance ↓)")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="WᵀW")
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1))
    fig.colorbar(sm, ax=axes[1].tolist(), shrink=0.8, label="superposition Σ_j≠i (Ŵ_i·W_j)² (capped at 1)")
    fig.suptitle(f"{n_feat} features in {W.shape[1]} dimensions: superposition appears as features get sparser",
                 y=1.02)
    save(fig, path)


def dimensionality(dims: dict, path, sweep: dict | None = None) -> None:
    """§"The Geometry of Superposition": dimensions per feature D* = m / ||W||_F² against 1/(1 − S) (line) and every
    feature's D_i (dots), with the paper's sticky fractions dashed. ``sweep`` (optional): also the D* of the
    importance-decay sweep."""
    s, dstar, di = _np(dims["sparsity"]), _np(dims["dims_per_feature"]), _np(dims["feature_dimensionality"])
    x = 1 / (1 - s)
    fig, ax = plt.subplots(figsize=(7, 4.8))
    for v, label in STICKY.items():
        ax.axhline(v, color="grey", lw=0.5, ls="--")
        ax.text(1.01, v, label, va="center", fontsize=6, color="grey", transform=ax.get_yaxis_transform())
    jitter = np.exp(np.linspace(-0.06, 0.06, di.shape[1]))  # spread the dots of one model a little sideways
    ax.scatter((x[:, None] * jitter[None, :]).ravel(), di.ravel(), s=9, alpha=0.5, color="tab:blue",
               label="D_i (each feature, equal importance)")
    ax.plot(x, dstar, color="black", marker="o", ms=3, label="D* (equal importance)")
    if sweep is not None:
        ax.plot(1 / (1 - _np(sweep["sparsity"])), _np(sweep["dims_per_feature"]), color="tab:orange", marker="s",
                ms=3, lw=1, label="D* (importance 0.9^i sweep)")
    ax.set_xscale("log")
    ax.set_ylim(-0.03, 1.08)
    ax.set_xlabel("1 / (1 − S)")
    ax.set_ylabel("dimensions per feature")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3 if sweep is not None else 2)
    ax.set_title(f"{di.shape[1]} features in {_np(dims['W']).shape[1]} dimensions: dimensionality falls with sparsity",
                 fontsize=10)
    save(fig, path)


def geometry(geo: dict, path, summary: dict | None = None) -> None:
    """The columns of W as arrows in the 2-D hidden space, one panel per sparsity (colour: importance); with the
    run's ``summary``, the titles give the dense pair's angle and the pentagon's largest angle error."""
    W, s, imp = _np(geo["W"]), _np(geo["sparsity"]), _np(geo["importance"])
    n_rep = _np(geo["n_represented"])
    lim = 1.2 * max(1.0, float(np.linalg.norm(W, axis=1).max()))
    fig, axes = plt.subplots(1, len(W), figsize=(3.6 * len(W), 3.8), squeeze=False)
    cmap = plt.get_cmap("viridis")
    shade = (imp - imp.min()) / max(float(np.ptp(imp)), 1e-9)
    notes = [""] * len(W)
    if summary and len(W) == 2:  # (dense, sparse), as run_superposition's geometry
        key = "superposition."
        notes = [f"\nangle of the top pair {summary.get(key + 'dense_pair_angle_deg', np.nan):.1f}°",
                 f"\nlargest gap error vs 72° {summary.get(key + 'pentagon_max_angle_error_deg', np.nan):.1f}°"]
    for ax, w, sp, k, note in zip(axes[0], W, s, n_rep, notes, strict=True):
        for i in range(w.shape[1]):
            ax.annotate("", xy=(w[0, i], w[1, i]), xytext=(0, 0),
                        arrowprops={"arrowstyle": "-|>", "color": cmap(shade[i]), "lw": 1.8})
            if np.linalg.norm(w[:, i]) > REPRESENTED:  # the unrepresented ones crowd the origin
                ax.text(1.12 * w[0, i], 1.12 * w[1, i], str(i), fontsize=8, ha="center", va="center")
        ax.add_patch(plt.Circle((0, 0), 1, fill=False, color="grey", lw=0.5, ls=":"))
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.axhline(0, color="grey", lw=0.3)
        ax.axvline(0, color="grey", lw=0.3)
        ax.set_title(f"{_sparsity_label(sp)}: {int(k)} of {w.shape[1]} features represented{note}", fontsize=9)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(float(imp.min()), float(imp.max())))
    fig.colorbar(sm, ax=axes[0].tolist(), shrink=0.8, label="importance (feature 0 most important)")
    fig.suptitle(f"{W.shape[2]} features in 2 dimensions: columns of W", y=1.02)
    save(fig, path)


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges of a log-spaced axis: geometric midpoints, extended by half a step at each end."""
    if len(centres) == 1:
        return np.array([centres[0] / 2, centres[0] * 2])
    mid = np.sqrt(centres[1:] * centres[:-1])
    return np.concatenate([[centres[0] ** 2 / mid[0]], mid, [centres[-1] ** 2 / mid[-1]]])


def phase_diagram(phase: dict, path) -> None:
    """§"Phase change": 2 features in 1 dimension; the outcome for the extra feature in every cell of feature
    density (1 − S, sparser to the right) x its importance relative to the other feature."""
    codes, density, rel = _np(phase["phase"]), 1 - _np(phase["sparsity"]), _np(phase["relative_importance"])
    fig, ax = plt.subplots(figsize=(6, 4.6))
    ax.pcolormesh(_edges(density), _edges(rel), codes, cmap=ListedColormap(PHASE_COLOURS), vmin=-0.5,
                  vmax=len(PHASE_LABELS) - 0.5, edgecolors="white", linewidth=0.5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("feature density 1 − S")
    ax.set_ylabel("relative importance of the extra feature")
    counts = [int((codes == c).sum()) for c in range(len(PHASE_LABELS))]
    ax.legend(handles=[Patch(color=col, label=f"{lab} ({n})") for col, lab, n in
                       zip(PHASE_COLOURS, PHASE_LABELS, counts, strict=True) if n or lab != "other"],
              fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title("2 features in 1 dimension: is the extra feature represented?", fontsize=10)
    save(fig, path)


def all_figures(tensors: dict, summary: dict, out) -> None:
    """The four figures from :func:`mechrepro.sae.superposition.tensors_for_saving`'s flat dict (as saved and
    loaded); ``out`` names the PNG paths ``sweep``, ``dimensionality``, ``geometry`` and ``phase`` (attributes, as
    Snakemake's output, or keys). ``summary`` is the run's summary: the geometry titles quote its angle errors."""
    pieces = split_saved(tensors)

    def path(name: str):
        return out[name] if isinstance(out, dict) else getattr(out, name)

    sparsity_sweep(pieces["sweep"], path("sweep"))
    dimensionality(pieces["dimensionality"], path("dimensionality"), sweep=pieces["sweep"])
    geometry(pieces["geometry"], path("geometry"), summary=summary)
    phase_diagram(pieces["phase"], path("phase"))
