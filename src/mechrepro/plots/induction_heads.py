"""Figures of the induction-heads replication (Olsson et al. 2022; Elhage et al. 2021)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mechrepro.plots import attention_pattern, head_heatmap, save


def phase_change(phase: dict[str, pd.DataFrame], icl: tuple[int, int], path, threshold: float = 0.3) -> None:
    """Olsson et al.'s phase-change figure: ICL score (top) and max induction score (bottom) vs
    training tokens, one column per model; the induction transition is shaded where induction heads
    formed (final max induction score >= ``threshold``)."""
    n = max(1, len(phase))
    fig, axes = plt.subplots(2, n, figsize=(4 * n, 6), sharex="col", squeeze=False)
    if not phase:
        for ax in axes[:, 0]:
            ax.text(0.5, 0.5, "not run at this scale:\nno training checkpoints", ha="center", va="center")
            ax.set_axis_off()
    from mechrepro.tasks.induction_heads import transition_index

    for col, (name, s) in enumerate(phase.items()):
        i = transition_index(s["max_induction"].to_numpy(), rising=True)
        lo = s["tokens"].iloc[max(0, i - 1)]
        hi = s["tokens"].iloc[min(i, len(s) - 1)]
        formed = s["max_induction"].iloc[-1] >= threshold
        for row, (key, label) in enumerate([("icl_score", f"ICL score\n(loss@{icl[1]} - loss@{icl[0]}, nats)"),
                                            ("max_induction", "max induction score")]):
            ax = axes[row, col]
            ax.plot(s["tokens"], s[key], marker="o", ms=3)
            if formed:
                ax.axvspan(lo, hi, color="orange", alpha=0.25, label="induction heads form")
            ax.set_xscale("log")
            ax.grid(alpha=0.3)
            if col == 0:
                ax.set_ylabel(label)
            if row == 0:
                ax.set_title(name)
            else:
                ax.set_xlabel("training tokens")
                ax.set_ylim(0, 1)
        if formed:
            axes[0, col].legend(fontsize=7, loc="lower left")
        else:
            axes[1, col].text(0.5, 0.5, "no induction heads", transform=axes[1, col].transAxes, ha="center")
    fig.suptitle("Phase change: in-context learning and induction heads form together")
    save(fig, path)


def head_scores(scores: pd.DataFrame, model: str, path) -> None:
    n_l, n_h = int(scores["layer"].max()) + 1, int(scores["head"].max()) + 1
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 0.6 * n_h * 2 + 3), max(2.5, 0.45 * n_l + 1.5)))
    for ax, key, title in [(axes[0], "induction", "induction score"), (axes[1], "prev_token", "previous-token score")]:
        im = head_heatmap(ax, scores[key].to_numpy().reshape(n_l, n_h), title, vmin=0, vmax=1)
    fig.colorbar(im, ax=axes, shrink=0.8)
    fig.suptitle(f"{model}: per-head scores on repeated random tokens", y=1.04)
    save(fig, path)


def attention_patterns(tensors: dict, model: str, path) -> None:
    heads = [k for k in tensors if k != "probe"]
    fig, axes = plt.subplots(1, len(heads), figsize=(4.2 * len(heads), 4), squeeze=False)
    for ax, h in zip(axes[0], heads, strict=True):
        attention_pattern(ax, tensors[h].float().numpy(), f"head {h}")
    fig.suptitle(f"{model}: attention on one [BOS, r, r] probe (induction = stripe below the diagonal)")
    save(fig, path)


def per_token_loss(loss: pd.DataFrame, model: str, path) -> None:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for _, t in loss.groupby("length"):
        ax.plot(t.position, t.loss, label=f"L = {int(t.length.iloc[0])}")
        ax.axvline(int(t.length.iloc[0]) + 0.5, color="grey", lw=0.5, ls=":")
    ax.set_xlabel("position of the predicted token")
    ax.set_ylabel("loss (nats)")
    ax.set_title(f"{model}: per-token loss on [BOS, r, r] (the repeated half is predictable by induction)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save(fig, path)


def ablation(table: pd.DataFrame, model: str, path) -> None:
    agg = table.groupby(["method", "kind"]).repeated_half_loss.agg(["mean", "std"]).reset_index()
    kinds = [k for k in ["none", "control", "previous-token", "induction"] if k in set(table.kind)]
    labels = {"none": "no ablation", "control": "other heads\n(control)", "induction": "top induction\nheads",
              "previous-token": "previous-token\nheads"}
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.38
    for i, method in enumerate(["zero", "mean"]):
        t = agg[agg.method == method].set_index("kind").reindex(kinds)
        x = np.arange(len(kinds)) + (i - 0.5) * width
        ax.bar(x, t["mean"], width, yerr=t["std"].fillna(0), label=f"{method}-ablation", capsize=3)
    ax.set_xticks(range(len(kinds)), [labels[k] for k in kinds])
    ax.set_ylabel("loss on the repeated half (nats)")
    ax.set_title(f"{model}: ablating induction heads vs the same number of other heads")
    ax.legend()
    save(fig, path)


def k_composition(table: pd.DataFrame, summary: dict, path, threshold: float = 0.3) -> None:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    if len(table) == 0:
        ax.text(0.5, 0.5, "one layer: no head pairs to compose", ha="center", va="center")
        ax.set_axis_off()
    else:
        s = table.sort_values("k_composition", ascending=False).head(20)
        labels = [f"{a}.{b}→{c}.{d}" for a, b, c, d in s[["src_layer", "src_head", "dst_layer", "dst_head"]].to_numpy()]
        colors = ["tab:red" if p >= threshold and q >= threshold else "tab:blue" for p, q in zip(s.src_prev_token, s.dst_induction,
                                                                                        strict=True)]
        ax.bar(range(len(s)), s.k_composition, color=colors)
        ax.axhline(summary["kcomp_random_p95"], color="k", ls="--", lw=1, label="random matrices, 95th pct")
        ax.axhline(summary["kcomp_random_mean"], color="grey", ls=":", lw=1, label="random matrices, mean")
        ax.set_xticks(range(len(s)), labels, rotation=60, fontsize=7)
        ax.set_ylabel("K-composition score")
        ax.set_title(f"{summary['model']}: strongest K-composition pairs (red: previous-token → induction head)")
        ax.legend(fontsize=8)
    save(fig, path)
