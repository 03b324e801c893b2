"""Figures of the IOI replication (Wang et al. 2022, *Interpretability in the Wild*)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap

from mechrepro.plots import save
from mechrepro.plots import signed_heatmap as _signed
from mechrepro.techniques.circuits import parse

STEP_TITLES = {"logits": "1. to the logits (name movers)", "nm_queries": "2. to name movers' queries, at END",
               "s_inh_values": "3. to S-inhibition values, at S2", "induction_keys": "4. to induction keys, at S1+1"}
CLASS_COLORS = {"name_mover": "#1f77b4", "backup_name_mover": "#aec7e8", "negative_name_mover": "#d62728",
                "s_inhibition": "#2ca02c", "induction": "#9467bd", "duplicate_token": "#ff7f0e",
                "previous_token": "#8c564b"}


def activation_patching(tensors: dict, roles: list[str], model: str, path) -> None:
    """Noising with ABC activations: residual stream by layer x role, and every head (all positions);
    colour = relative change of the logit difference (%)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    resid = tensors["resid"].numpy()
    im = _signed(axes[0], resid, "residual stream (layer x position)")
    axes[0].set_xticks(range(len(roles)), [r.upper() for r in roles])
    axes[0].set_xlabel("position")
    fig.colorbar(im, ax=axes[0], label="relative change of logit diff.")
    im = _signed(axes[1], tensors["heads"].numpy(), "head outputs (all positions)")
    fig.colorbar(im, ax=axes[1], label="relative change of logit diff.")
    fig.suptitle(f"{model}: activation patching, ABC -> clean (numbers in %)")
    save(fig, path)


def path_patching(tensors: dict, model: str, path) -> None:
    """One heatmap per step of the backwards search (the steps that ran)."""
    steps = [k for k in STEP_TITLES if f"path.{k}" in tensors]
    fig, axes = plt.subplots(1, len(steps), figsize=(4.5 * len(steps), 4), squeeze=False)
    for ax, k in zip(axes[0], steps, strict=True):
        im = _signed(ax, tensors[f"path.{k}"].numpy(), STEP_TITLES[k])
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"{model}: path patching (ABC -> clean), relative change of logit diff. (%)")
    save(fig, path)


def attention_vs_projection(scatter: pd.DataFrame, head: str, model: str, path) -> None:
    """Wang et al. Fig. 3: per prompt, the head's attention from END to a name against the projection of its
    END output onto that name's unembedding (IO in blue, S in red)."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.scatter(scatter["attn_io"], scatter["proj_io"], s=10, alpha=0.6, label="IO", color="#1f77b4")
    ax.scatter(scatter["attn_s"], scatter["proj_s"], s=10, alpha=0.6, label="S (S1 + S2)", color="#d62728")
    for who, color in (("io", "#1f77b4"), ("s", "#d62728")):
        x, y = scatter[f"attn_{who}"].to_numpy(), scatter[f"proj_{who}"].to_numpy()
        if x.std() > 0 and y.std() > 0:
            ax.annotate(f"r = {np.corrcoef(x, y)[0, 1]:.2f}", xy=(0.02, 0.95 if who == "io" else 0.88),
                        xycoords="axes fraction", color=color)
    ax.set_xlabel("attention probability from END")
    ax.set_ylabel("head output at END · unembedding of the name")
    ax.set_title(f"{model}: head {head}, attention vs. copying")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    save(fig, path)


def _class_grid(ax, classes: dict[str, list[str]], n_layers: int, n_heads: int, title: str) -> None:
    names = list(CLASS_COLORS)
    grid = np.zeros((n_layers, n_heads))
    for c, heads in classes.items():
        for h in heads:
            la, hd = parse(h)
            if la < n_layers and hd < n_heads:
                grid[la, hd] = names.index(c) + 1
    ax.imshow(grid, cmap=ListedColormap(["#f0f0f0", *CLASS_COLORS.values()]), vmin=0, vmax=len(names),
              aspect="auto")
    ax.set_xticks(range(n_heads))
    ax.set_yticks(range(n_layers))
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(title)


def circuit_diagram(circuit: dict, n_layers: int, n_heads: int, path) -> None:
    """Heads coloured by class: ours, and Wang et al.'s GPT-2 small circuit when the model has its shape."""
    panels = [("discovered here", circuit["discovered"]["roles"])]
    if (n_layers, n_heads) == (12, 12):
        panels.append(("Wang et al. 2022 (GPT-2 small)", circuit["paper"]["roles"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels) + 2, 4), squeeze=False)
    for ax, (title, classes) in zip(axes[0], panels, strict=True):
        _class_grid(ax, classes, n_layers, n_heads, f"{circuit['model']}: {title}")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in CLASS_COLORS.values()]
    fig.legend(handles, [c.replace("_", " ") for c in CLASS_COLORS], loc="center right", fontsize=8)
    fig.subplots_adjust(right=0.78)
    save(fig, path)


def validation(faith: list[dict], completeness: pd.DataFrame, minimality: pd.DataFrame, model: str, path) -> None:
    """Faithfulness per circuit and protocol; completeness (F(C\\K) vs F(M\\K), the diagonal is complete);
    minimality per head."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    labels = [f"{r['circuit']}\n{r['protocol']}" for r in faith]
    vals = [100 * r["faithfulness"] for r in faith]
    axes[0].bar(range(len(vals)), vals, color=["#1f77b4" if r["circuit"] == "discovered" else "#7f7f7f" for r in faith])
    axes[0].set_xticks(range(len(vals)), labels, fontsize=8)
    axes[0].axhline(100, color="black", lw=0.8)
    axes[0].set_ylabel("F(C) / F(M)  (%)")
    axes[0].set_title("faithfulness (mean ablation outside C)")
    ax = axes[1]
    if len(completeness):
        for kind, marker in (("empty", "o"), ("random", "."), ("greedy", "x")):
            part = completeness[completeness["kind"] == kind]
            ax.scatter(part["F_M_minus_K"], part["F_C_minus_K"], marker=marker, label=kind)
        part = completeness[completeness["kind"] == "role"]
        ax.scatter(part["F_M_minus_K"], part["F_C_minus_K"], marker="s", label="a whole class")
        lo = float(min(completeness[["F_M_minus_K", "F_C_minus_K"]].min().min(), 0))
        hi = float(completeness[["F_M_minus_K", "F_C_minus_K"]].max().max())
        ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no circuit heads found:\nnothing to remove", ha="center", va="center")
    ax.set_xlabel("F(M \\ K)")
    ax.set_ylabel("F(C \\ K)")
    ax.set_title("completeness")
    ax = axes[2]
    if len(minimality):
        ax.bar(range(len(minimality)), 100 * minimality["minimality"],
               color=[CLASS_COLORS.get(c, "gray") for c in minimality["role"]])
        ax.set_xticks(range(len(minimality)), minimality["part"], rotation=90)
    else:
        ax.text(0.5, 0.5, "no circuit heads found", ha="center", va="center")
    ax.set_ylabel("|F(C\\(K∪v)) − F(C\\K)| / F(M)  (%)")
    ax.set_title("minimality")
    fig.suptitle(f"{model}: circuit validation (Wang et al. §4)")
    fig.tight_layout()
    save(fig, path)
