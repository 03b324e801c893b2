"""Figures of circuit discovery scored against known circuits (replications/circuit_discovery).

Each figure shows every ground truth, and each method under the ablation the ground truth is exact under
("matched") beside another ("mismatched": Miller et al. 2024's point that the ablation alone moves the score).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from mechrepro.plots import save as save_figure  # noqa: E402

METHOD_COLORS = {"exact": "#1b9e77", "eap": "#7570b3", "eap_ig": "#d95f02", "random": "#999999"}
LABELS = {"exact": "exact patching", "eap": "EAP", "eap_ig": "EAP-IG", "random": "random"}


def _title(truth: str, card: dict) -> str:
    return f"{truth}\n(exact under {card['ablation']} ablation)"


def auroc_bars(aurocs: dict[str, pd.DataFrame], cards: dict[str, dict], path) -> None:
    """Edge (top) and node (bottom) AUROC per method, matched and mismatched ablation side by side."""
    truths = list(aurocs)
    fig, axes = plt.subplots(2, len(truths), figsize=(3.4 * len(truths), 5.6), squeeze=False, sharey=True)
    for j, t in enumerate(truths):
        df = aurocs[t]
        for i, level in enumerate(("edge", "node")):
            ax = axes[i, j]
            d = df[df.level == level]
            methods = [m for m in LABELS if m in set(d.method)]
            x = np.arange(len(methods))
            for k, matched in enumerate((True, False)):
                vals = [d[(d.method == m) & (d.matched == matched)].auroc.mean() for m in methods]
                ax.bar(x + (k - 0.5) * 0.38, vals, 0.36, color=[METHOD_COLORS[m] for m in methods],
                       alpha=1.0 if matched else 0.45, hatch=None if matched else "//", edgecolor="black", lw=0.5,
                       label="matched ablation" if matched else "mismatched ablation")
                for xi, v in zip(x, vals, strict=True):
                    if np.isfinite(v):
                        ax.text(xi + (k - 0.5) * 0.38, v + 0.01, f"{v:.2f}", ha="center", fontsize=6.5)
            ax.axhline(0.5, color="grey", ls=":", lw=0.8)
            ax.set_xticks(x, [LABELS[m] for m in methods], fontsize=7, rotation=20)
            ax.set_ylim(0, 1.12)
            if i == 0:
                ax.set_title(_title(t, cards[t]), fontsize=8)
            if j == 0:
                ax.set_ylabel(f"{level} AUROC")
    axes[0, 0].legend(fontsize=6.5, loc="lower left")
    fig.suptitle("AUROC against the known circuit (solid: the ground truth's own ablation; hatched: mismatched)",
                 fontsize=9)
    save_figure(fig, path)


def roc_curves(rocs: dict[str, pd.DataFrame], cards: dict[str, dict], path) -> None:
    """Edge-level ROC curves: a row per ground truth, matched ablation left, mismatched right."""
    truths = list(rocs)
    fig, axes = plt.subplots(len(truths), 2, figsize=(6.4, 2.9 * len(truths)), squeeze=False)
    for i, t in enumerate(truths):
        d = rocs[t][rocs[t].level == "edge"]
        for j, matched in enumerate((True, False)):
            ax = axes[i, j]
            dd = d[d.matched == matched]
            for m in [m for m in LABELS if m in set(dd.method)]:
                r = dd[dd.method == m].sort_values("point")
                ax.plot(r.fpr, r.tpr, color=METHOD_COLORS[m], lw=1.4, label=LABELS[m], drawstyle="default")
            ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=0.8)
            abl = dd.ablation.iloc[0] if len(dd) else "?"
            ax.set_title(f"{t}: {'matched' if matched else 'mismatched'} ({abl})", fontsize=8)
            ax.set_xlabel("false-positive rate", fontsize=7)
            ax.set_ylabel("true-positive rate", fontsize=7)
            ax.set_aspect("equal")
    axes[0, 0].legend(fontsize=6.5, loc="lower right")
    save_figure(fig, path)


def _grid(nodes: pd.DataFrame) -> tuple[list[str], int, int, bool]:
    """[layer, head + MLP column] positions of each node name."""
    names = list(dict.fromkeys(nodes.node))
    heads = [n for n in names if not n.startswith("MLP")]
    n_layers = 1 + max(int(n.split(".")[0]) if not n.startswith("MLP") else int(n[4:]) for n in names)
    n_heads = 1 + max((int(n.split(".")[1]) for n in heads), default=-1)
    return names, n_layers, n_heads, any(n.startswith("MLP") for n in names)


def _cell(name: str, n_heads: int) -> tuple[int, int]:
    if name.startswith("MLP"):
        return int(name[4:]), n_heads
    layer, head = name.split(".")
    return int(layer), int(head)


def circuits(nodes: dict[str, pd.DataFrame], cards: dict[str, dict], path) -> None:
    """Per ground truth (rows): the known circuit's heads and MLPs, then each method's node scores under the matched
    ablation (darker: larger |score|), the known nodes outlined in every panel."""
    truths = list(nodes)
    methods = [m for m in LABELS if m in set(pd.concat(nodes.values()).method)]
    fig, axes = plt.subplots(len(truths), 1 + len(methods), figsize=(2.5 * (1 + len(methods)), 2.8 * len(truths)),
                             squeeze=False)
    for i, t in enumerate(truths):
        df = nodes[t][nodes[t].matched]
        names, n_layers, n_heads, has_mlp = _grid(df)
        cols = n_heads + (1 if has_mlp else 0)
        truth = {n for n in names if df[df.node == n].in_truth.iloc[0]}
        for j, m in enumerate(["truth", *methods]):
            ax = axes[i, j]
            img = np.full((n_layers, cols), np.nan)
            for n in names:
                la, h = _cell(n, n_heads)
                if m == "truth":
                    img[la, h] = 1.0 if n in truth else 0.0
                else:
                    r = df[(df.method == m) & (df.node == n)]
                    img[la, h] = float(r.score.iloc[0])
            if m != "truth":
                top = np.nanmax(img)
                img = img / top if top > 0 else img
            ax.imshow(img, cmap="Greens" if m == "truth" else "Oranges", vmin=0, vmax=1, origin="lower",
                      aspect="auto")
            for n in truth:
                la, h = _cell(n, n_heads)
                ax.add_patch(Rectangle((h - 0.5, la - 0.5), 1, 1, fill=False, ec="black", lw=1.6))
            if m != "truth":
                for n in names:
                    r = df[(df.method == m) & (df.node == n)]
                    la, h = _cell(n, n_heads)
                    ax.text(h, la, str(int(r["rank"].iloc[0])), ha="center", va="center", fontsize=6)
            ax.set_xticks(range(cols), [*map(str, range(n_heads)), *(["MLP"] if has_mlp else [])], fontsize=6)
            ax.set_yticks(range(n_layers), [f"L{la}" for la in range(n_layers)], fontsize=6)
            ax.set_title(("known circuit" if m == "truth" else f"{LABELS[m]} (rank)") + (f"\n{t}" if j == 0 else ""),
                         fontsize=7.5)
    fig.suptitle("The known circuit (outlined) beside each method's node scores (matched ablation)", fontsize=9)
    save_figure(fig, path)


def faithfulness(curves: dict[str, pd.DataFrame], cards: dict[str, dict], path) -> None:
    """Faithfulness f against the fraction of edges kept: each method matched (solid) and mismatched (dashed), the
    random orders' range shaded."""
    truths = list(curves)
    fig, axes = plt.subplots(1, len(truths), figsize=(3.3 * len(truths), 3.0), squeeze=False)
    for j, t in enumerate(truths):
        ax, d = axes[0, j], curves[t]
        for matched, ls in ((True, "-"), (False, "--")):
            dd = d[d.matched == matched]
            rnd = dd[dd.method == "random"].groupby("fraction").faithfulness
            if len(dd[dd.method == "random"]):
                ax.fill_between(rnd.min().index, rnd.min(), rnd.max(), color="grey", alpha=0.18 if matched else 0.08)
            for m in [m for m in LABELS if m != "random" and m in set(dd.method)]:
                r = dd[dd.method == m].sort_values("fraction")
                ax.plot(r.fraction, r.faithfulness, ls, color=METHOD_COLORS[m], lw=1.3,
                        label=f"{LABELS[m]} ({'matched' if matched else 'mismatched'})" if j == 0 else None)
        ax.set_xscale("log")
        ax.set_title(_title(t, cards[t]), fontsize=8)
        ax.set_xlabel("fraction of edges kept", fontsize=7)
        ax.axhline(1.0, color="grey", lw=0.6)
    axes[0, 0].set_ylabel("faithfulness f")
    axes[0, 0].legend(fontsize=5.5, loc="upper left")
    save_figure(fig, path)


__all__ = ["auroc_bars", "circuits", "faithfulness", "roc_curves"]
