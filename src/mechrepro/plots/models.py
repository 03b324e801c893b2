"""Figures of the model-card report: training curves and the capability numbers."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from mechrepro.plots import save


def training_curves(logs: dict[str, pd.DataFrame], path: str | Path) -> None:
    """Training loss against tokens seen (log x), one line per toy model; logs have columns tokens, loss."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, log in sorted(logs.items()):
        ax.plot(log["tokens"], log["loss"], label=name, lw=1.2)
    ax.set_xscale("log")
    ax.set_xlabel("training tokens")
    ax.set_ylabel("training loss (nats / token)")
    ax.set_title("Training curves of the toy models")
    ax.grid(alpha=0.3)
    if logs:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no toy model at this scale", ha="center", va="center", transform=ax.transAxes)
    save(fig, path)


def capability_bars(table: pd.DataFrame, path: str | Path, required: dict[str, dict] | None = None) -> None:
    """IOI accuracy, IOI logit difference and Greater-Than probability difference per model,
    with the required bars drawn where a model has one."""
    cols = [("ioi_accuracy", "IOI accuracy (logit IO > S)"), ("ioi_logit_diff", "IOI logit diff"),
            ("gt_prob_diff", "Greater-Than prob. diff")]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2 + 0.25 * len(table)))
    for ax, (c, title) in zip(axes, cols, strict=True):
        ax.barh(table["model"], table[c], color="tab:blue")
        for i, m in enumerate(table["model"]):
            bar = (required or {}).get(m, {}).get(c)
            if bar is not None:
                ax.plot([bar, bar], [i - 0.4, i + 0.4], color="tab:red", lw=2)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(title, fontsize=10)
        ax.invert_yaxis()
    axes[0].set_xlim(0, 1)
    fig.suptitle("Held-out capability checks (red: the required bar)", fontsize=11)
    fig.tight_layout()
    save(fig, path)
