"""Figures shared by the replications (matplotlib, Agg backend, PNG files written atomically)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mechrepro.io import atomic_path  # noqa: E402

DPI = 110


def save(fig, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def placeholder(path: str | Path, text: str) -> None:
    """A small figure that says why there is nothing to draw (e.g. a dataset without latents), so that a report's
    figure is never missing."""
    fig, ax = plt.subplots(figsize=(5, 2))
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.axis("off")
    save(fig, path)


def head_heatmap(ax, values: np.ndarray, title: str, vmin: float = 0.0, vmax: float | None = None,
                 cmap: str = "viridis", annotate: bool = True):
    """values: [layer head]; layers on the y axis, heads on the x axis, as in the papers."""
    im = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_xticks(range(values.shape[1]))
    ax.set_yticks(range(values.shape[0]))
    ax.set_title(title)
    if annotate and values.size <= 64:
        for (i, j), v in np.ndenumerate(values):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if v < (vmax or values.max()) * 0.6 else "black")
    return im


def signed_heatmap(ax, values: np.ndarray, title: str):
    """[layer head] relative effects, red/blue around zero, annotated in % when small enough to read."""
    lim = max(float(np.nanmax(np.abs(values))), 1e-6)
    im = head_heatmap(ax, values, title, vmin=-lim, vmax=lim, cmap="RdBu", annotate=False)
    if values.size <= 64:
        for (i, j), v in np.ndenumerate(values):
            ax.text(j, i, f"{100 * v:.0f}", ha="center", va="center", fontsize=7)
    return im


def attention_pattern(ax, pattern: np.ndarray, title: str, labels: list[str] | None = None):
    """pattern: [query key]."""
    ax.imshow(pattern, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("key position")
    ax.set_ylabel("query position")
    if labels is not None and len(labels) <= 40:
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
        ax.set_yticks(range(len(labels)), labels, fontsize=6)
