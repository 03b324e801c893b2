"""Figures of the monosemanticity replication (Bricken et al. 2023, *Towards Monosemanticity*): feature density,
sparsity / reconstruction / loss recovered vs dictionary size, ground-truth AUROC of features vs neurons, and
feature splitting between two dictionary sizes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from mechrepro.plots import save
from mechrepro.sae.metrics import DENSE_THRESHOLD, MATCH_THRESHOLD, log_density_histogram


def _np(x) -> np.ndarray:
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=float)


def density_histograms(freqs: Mapping[str, torch.Tensor], path, edges: Sequence[float] | None = None,
                       dense_threshold: float = DENSE_THRESHOLD, title: str = "") -> None:
    """Bricken et al.'s feature-density figure: histogram of log10 firing frequency, one panel per dictionary
    (``freqs``: label, e.g. "512 features" -> firing frequency [d_sae]), on shared bins; dead features (never fired,
    no log10) are written in each panel, the dense threshold is drawn."""
    if not freqs:
        raise ValueError("density_histograms needs at least one dictionary")
    freqs = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in freqs.items()}
    if edges is None:  # shared bins: from the rarest live feature's decade over all dictionaries to 0
        live = [f[f > 0].min() for f in freqs.values() if (f > 0).any()]
        lo = min(-1, int(np.floor(np.log10(float(min(live)))))) if live else -1
        edges = np.linspace(lo, 0, 10 * -lo + 1)
    fig, axes = plt.subplots(len(freqs), 1, figsize=(6.5, 1.9 * len(freqs) + 0.6), sharex=True, squeeze=False)
    for ax, (label, f) in zip(axes[:, 0], freqs.items(), strict=True):
        h = log_density_histogram(f, edges)
        ax.stairs(h.counts.numpy(), h.edges.numpy(), fill=True, alpha=0.6)
        ax.axvline(np.log10(dense_threshold), color="black", ls="--", lw=0.8)
        n_dense = int((f > dense_threshold).sum())
        ax.text(0.01, 0.95, f"{label}\ndead: {h.n_dead} ({100 * h.n_dead / h.n_features:.1f}%)\n"
                f"dense (> {dense_threshold:g}): {n_dense} ({100 * n_dense / h.n_features:.1f}%)",
                transform=ax.transAxes, va="top", fontsize=8)
        ax.set_ylabel("features")
    axes[-1, 0].set_xlabel("log10 firing frequency (fraction of tokens); dead features not shown")
    fig.suptitle(title or "Feature density", y=1.0)
    save(fig, path)


METRIC_PANELS = {"l0": "L0 (active features per token)", "fvu": "fraction of variance unexplained",
                 "ce_loss_recovered": "CE loss recovered"}


def metrics_vs_size(table: pd.DataFrame, path, title: str = "") -> None:
    """L0, FVU and CE loss recovered against dictionary size: ``table`` has one row per dictionary with columns
    d_sae, l0, fvu, ce_loss_recovered."""
    missing = {"d_sae", *METRIC_PANELS} - set(table.columns)
    if missing:
        raise ValueError(f"metrics_vs_size: table lacks columns {sorted(missing)}")
    t = table.sort_values("d_sae")
    fig, axes = plt.subplots(1, len(METRIC_PANELS), figsize=(4 * len(METRIC_PANELS), 3.2))
    for ax, (col, label) in zip(axes, METRIC_PANELS.items(), strict=True):
        ax.plot(t["d_sae"], t[col], marker="o")
        ax.set_xscale("log", base=2)
        ax.set_xticks(t["d_sae"], [str(int(d)) for d in t["d_sae"]])
        ax.set_xlabel("dictionary size (features)")
        ax.set_title(label, fontsize=10)
        if col == "ce_loss_recovered":
            ax.axhline(1.0, color="grey", lw=0.6, ls=":")
    fig.suptitle(title or "SAE sparsity and reconstruction vs dictionary size", y=1.03)
    fig.tight_layout()
    save(fig, path)


def auroc_dumbbell(table: pd.DataFrame, path, title: str = "") -> None:
    """Ground-truth monosemanticity: per latent property (rows of ``table``: columns latent, sae_auroc,
    neuron_auroc), the best SAE feature's AUROC and the best MLP neuron's, joined by a line; 0.5 = chance."""
    missing = {"latent", "sae_auroc", "neuron_auroc"} - set(table.columns)
    if missing:
        raise ValueError(f"auroc_dumbbell: table lacks columns {sorted(missing)}")
    y = np.arange(len(table))
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(table) + 1.4))
    ax.hlines(y, table["neuron_auroc"], table["sae_auroc"], color="grey", lw=1.5)
    ax.scatter(table["neuron_auroc"], y, color="tab:blue", label="best MLP neuron", zorder=3)
    ax.scatter(table["sae_auroc"], y, color="tab:orange", label="best SAE feature", zorder=3)
    ax.axvline(0.5, color="black", ls=":", lw=0.8)
    ax.set_yticks(y, table["latent"].astype(str))
    ax.set_xlim(min(0.45, float(np.nanmin(table[["sae_auroc", "neuron_auroc"]].to_numpy())) - 0.02), 1.01)
    ax.set_xlabel("AUROC as a detector of the property (0.5 = chance)")
    ax.invert_yaxis()
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: never over a point
    ax.set_title(title or "Best single unit per property: SAE feature vs MLP neuron", fontsize=10)
    save(fig, path)


def feature_splitting(cos, path, small_ids: Sequence[int] | None = None, n_show: int = 4, n_top: int = 5,
                      threshold: float = MATCH_THRESHOLD, labels: tuple[str, str] = ("small", "large"),
                      title: str = "") -> None:
    """Feature splitting: ``cos`` [n_small n_large] decoder cosines between a small and a large dictionary. For a
    few small features (``small_ids``, default: the ``n_show`` with the most large-dictionary matches above
    ``threshold``), bars of their ``n_top`` closest large features."""
    c = _np(cos)
    if c.ndim != 2 or c.size == 0:
        raise ValueError(f"feature_splitting needs a cosine matrix [n_small n_large], got shape {c.shape}")
    if small_ids is None:
        n_match = (c >= threshold).sum(1)
        small_ids = list(np.lexsort((-c.max(1), -n_match))[:n_show])  # most matches, then highest best cosine
    if not small_ids or not all(0 <= int(i) < len(c) for i in small_ids):
        raise ValueError(f"small_ids must be indices into the {len(c)} small features, got {small_ids}")
    n_top = min(n_top, c.shape[1])
    fig, axes = plt.subplots(len(small_ids), 1, figsize=(5.5, 1.2 + 0.28 * n_top * len(small_ids)), squeeze=False)
    for ax, i in zip(axes[:, 0], small_ids, strict=True):
        top = np.argsort(-c[i], kind="stable")[:n_top]
        colors = ["tab:orange" if c[i, j] >= threshold else "lightgrey" for j in top]
        ax.barh(np.arange(n_top), c[i, top], color=colors)
        ax.set_yticks(np.arange(n_top), [f"{labels[1]} #{j}" for j in top], fontsize=7)
        ax.invert_yaxis()
        ax.axvline(threshold, color="black", ls="--", lw=0.8)
        ax.set_xlim(min(0.0, float(c[i, top].min())), 1.0)
        ax.set_title(f"{labels[0]} feature #{int(i)}", fontsize=9)
    axes[-1, 0].set_xlabel(f"decoder cosine similarity (orange: >= {threshold:g})")
    fig.suptitle(title or f"Feature splitting: {labels[0]} -> {labels[1]} dictionary", y=1.0)
    fig.tight_layout()
    save(fig, path)


def planted_cosines(best_cosine: Sequence[float], summary: Mapping[str, float], path, title: str = "") -> None:
    """Planted features (Sharkey et al. 2022): for each true feature, the best cosine between its direction and any
    learned decoder direction; their mean is the MMCS."""
    cos = _np(best_cosine)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.hist(cos, bins=np.linspace(min(0.0, cos.min()), 1.0, 41), color="#1f77b4")
    ax.axvline(cos.mean(), color="black", ls="--", lw=1)
    ax.text(cos.mean(), ax.get_ylim()[1] * 0.9, f" MMCS {cos.mean():.3f}", ha="right" if cos.mean() > 0.5 else "left")
    ax.set_xlabel("best cosine of a true feature with any learned decoder direction")
    ax.set_ylabel("true features")
    ax.set_title(title or f"{int(summary['planted.n_features'])} planted features in {int(summary['planted.d_model'])} "
                 f"dimensions, SAE of {int(summary['planted.d_sae'])} latents", fontsize=10)
    save(fig, path)


def interpretability(spec: pd.DataFrame, auto: pd.DataFrame, expansion: int, path, title: str = "") -> None:
    """The paper's two measures, features of one dictionary against the neurons: left, per latent the held-out
    activation-weighted precision of the most specific feature and of the most specific neuron; right, the held-out
    automated-interpretability scores of every live unit (medians marked)."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, max(3.0, 0.28 * spec["latent"].nunique() + 1.2)))
    pick = spec[(spec["family"] == "neurons") | (spec["expansion"] == expansion)]
    wide = pick.pivot_table(index="latent", columns="family", values="precision").reindex(columns=["neurons", "sae"])
    wide = wide.sort_values("sae", na_position="first")
    yy = np.arange(len(wide))
    for i, (_, r) in enumerate(wide.iterrows()):
        if not (np.isnan(r["neurons"]) or np.isnan(r["sae"])):
            a1.plot([r["neurons"], r["sae"]], [i, i], color="#999", lw=1)
    a1.scatter(wide["neurons"], yy, color="#1f77b4", label="best neuron", zorder=3)
    a1.scatter(wide["sae"], yy, color="#e07800", label=f"best feature ({expansion}x)", zorder=3)
    a1.set_yticks(yy, wide.index)
    a1.set_xlim(-0.02, 1.02)
    a1.set_xlabel("activation-weighted precision (held-out half)")
    a1.set_title("specificity per latent")
    a1.legend(fontsize=8, loc="lower right")
    scores = {"neurons": auto.loc[auto["family"] == "neurons", "score"].to_numpy(),
              f"features ({expansion}x)": auto.loc[(auto["family"] == "sae") & (auto["expansion"] == expansion),
                                                    "score"].to_numpy()}
    bins = np.linspace(-0.2, 1.0, 37)
    for (label, v), color in zip(scores.items(), ("#1f77b4", "#e07800"), strict=True):
        if len(v):
            a2.hist(v, bins=bins, density=True, alpha=0.5, color=color, label=f"{label}: {len(v)} live, median {np.median(v):.2f}")
            a2.axvline(np.median(v), color=color, ls="--")
    a2.set_xlabel("held-out Pearson of simulated and true activation")
    a2.set_title("automated interpretability (explanations: latents and pairs)")
    a2.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    save(fig, path)


def splitting_for_latent(split: Mapping, path, title: str = "") -> None:
    """One latent's detectors at each dictionary size (columns), each labelled with its precision, linked to the
    next size's by decoder cosine (line width and label; cosines below 0.2 not drawn)."""
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    if not split or not any(s["features"] for s in split["sizes"]):
        ax.text(0.5, 0.5, "no feature of any dictionary detects this latent", ha="center", va="center")
        ax.axis("off")
        save(fig, path)
        return
    pos = {}
    for x, size in enumerate(split["sizes"]):
        for k, (f, p) in enumerate(zip(size["features"], size["precision"], strict=True)):
            pos[(size["expansion"], f)] = (x, -k)
            ax.scatter([x], [-k], s=700, color=plt.cm.Oranges(0.25 + 0.7 * p), edgecolor="black", zorder=3)
            ax.text(x, -k, f"{f}\n{p:.2f}", ha="center", va="center", fontsize=7, zorder=4)
    for link in split["links"]:
        a = next(s for s in split["sizes"] if s["expansion"] == link["from"])["features"]
        b = next(s for s in split["sizes"] if s["expansion"] == link["to"])["features"]
        for i, fa in enumerate(a):
            for j, fb in enumerate(b):
                c = link["cosine"][i][j]
                if c >= 0.2:
                    (x0, y0), (x1, y1) = pos[(link["from"], fa)], pos[(link["to"], fb)]
                    ax.plot([x0, x1], [y0, y1], color="#555", lw=0.5 + 4 * c, zorder=1)
                    ax.text(x0 + 0.3 * (x1 - x0), y0 + 0.3 * (y1 - y0), f"{c:.2f}", fontsize=7, color="#333",
                            bbox={"fc": "white", "ec": "none", "pad": 0.5})
    ax.set_xticks(range(len(split["sizes"])), [f"{s['expansion']}x" for s in split["sizes"]])
    ax.set_yticks([])
    ax.set_xlim(-0.6, len(split["sizes"]) - 0.4)
    ax.set_ylim(-max(len(s["features"]) for s in split["sizes"]) + 0.4, 0.6)
    ax.set_title(title or f"feature splitting: {split['latent']} (node: feature id and precision; edge: decoder cosine)",
                 fontsize=9)
    save(fig, path)


def probes(table: pd.DataFrame, path, title: str = "") -> None:
    """Linear probes per latent (rows) and site (columns: each model's residual stream after each layer, the MLP
    neurons, the best single SAE feature): balanced accuracy on held-out documents, and selectivity (accuracy minus
    the control task's); a cross marks a probe within noise of its shuffled-label control."""
    t = table.copy()
    t["column"] = [f"{m}\nfeature" if s == "best SAE feature" else (f"{m}\nneurons" if s == "neurons" else f"{m}\nL{int(la)}")
                   for m, s, la in zip(t["model"], t["site"], t["layer"], strict=True)]
    cols = list(dict.fromkeys(t["column"]))
    latents = sorted(t["latent"].unique())
    acc = t.pivot_table(index="latent", columns="column", values="accuracy").reindex(index=latents, columns=cols)
    sel = t[t["selectivity"].notna()].pivot_table(index="latent", columns="column", values="selectivity")
    sel = sel.reindex(index=latents, columns=[c for c in cols if c in sel.columns])
    fig, axes = plt.subplots(1, 2, figsize=(3 + 0.75 * (len(cols) + sel.shape[1]), 0.32 * len(latents) + 2.2),
                             gridspec_kw={"width_ratios": [len(cols), max(1, sel.shape[1])]})
    for ax, data, label, vmin, cmap in ((axes[0], acc, "balanced accuracy", 0.5, "viridis"),
                                        (axes[1], sel, "selectivity (vs control task)", 0.0, "magma")):
        im = ax.imshow(data.to_numpy(dtype=float), aspect="auto", vmin=vmin, vmax=1.0 if vmin else 0.5, cmap=cmap)
        ax.set_xticks(range(data.shape[1]), data.columns, fontsize=7)
        ax.set_yticks(range(len(latents)), latents if ax is axes[0] else [""] * len(latents), fontsize=8)
        ax.set_title(label, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.04)
    noisy = t[t["within_noise"].astype(str) == "True"]
    for _, r in noisy.iterrows():
        axes[0].text(cols.index(r["column"]), latents.index(r["latent"]), "x", ha="center", va="center",
                     color="red", fontsize=10, fontweight="bold")
    if title:
        fig.suptitle(title + "  (x: within noise of the shuffled-label control)", fontsize=10)
    save(fig, path)
