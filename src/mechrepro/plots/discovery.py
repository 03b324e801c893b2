"""Figures of edge-level circuit discovery: faithfulness curves (Hanna et al. 2024, Fig. 2; MIB) and the circuit
drawn as a graph (layers as rows; the input, heads, MLPs and logits as nodes; edge width = |score|)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mechrepro.plots import save

METHOD_STYLE = {"exact": ("exact edge patching", "#2ca02c"), "eap": ("EAP", "#1f77b4"),
                "eap_ig": ("EAP-IG", "#d62728"), "random": ("random edges", "#7f7f7f")}


def faithfulness_curves(curves: pd.DataFrame, summary: dict, title: str, path) -> None:
    """f against the edge fraction for every method; the random orders as their median and 95% band."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    rand = curves[curves["method"] == "random"]
    if len(rand):
        band = rand.groupby("fraction")["faithfulness"]
        x = np.array(sorted(rand["fraction"].unique()))
        lo, hi, med = (band.quantile(q).reindex(x).to_numpy() for q in (0.025, 0.975, 0.5))
        label, color = METHOD_STYLE["random"]
        ax.fill_between(x, lo, hi, color=color, alpha=0.25, label=f"{label}: 95% of {rand['run'].nunique()} orders")
        ax.plot(x, med, color=color, lw=1, ls="--")
    for method, part in curves[curves["method"] != "random"].groupby("method", sort=False):
        label, color = METHOD_STYLE.get(method, (method, None))
        part = part.sort_values("fraction")
        cpr = summary.get(f"{method}.cpr")
        ax.plot(part["fraction"], part["faithfulness"], marker="o", ms=3, color=color,
                label=f"{label}" + ("" if cpr is None else f" (CPR {cpr:.2f})"))
    for level in (0.8, 0.9):
        ax.axhline(level, color="black", lw=0.6, ls=":")
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("fraction of the graph's edges kept")
    ax.set_ylabel("normalised faithfulness f")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    save(fig, path)


def _positions(n_layers: int, n_heads: int) -> dict[tuple, tuple[float, float]]:
    """(kind, layer, head) -> (x, y): heads of a layer in a row, its MLP above and to the right; input below,
    logits on top."""
    pos: dict[tuple, tuple[float, float]] = {("input", -1, -1): ((n_heads - 1) / 2, 0.0),
                                             ("logits", n_layers, -1): ((n_heads - 1) / 2, 2 * n_layers + 1.0)}
    for la in range(n_layers):
        for h in range(n_heads):
            pos["head", la, h] = (float(h), 2 * la + 1.0)
        pos["mlp", la, -1] = (n_heads - 0.2, 2 * la + 2.0)  # to the right: edges into it do not cross the heads
    return pos


def edge_circuit(edges: pd.DataFrame, score: str, n_layers: int, n_heads: int, title: str, path) -> None:
    """The circuit's edges (``in_circuit``) between node positions; width ~ |score|; red where the edge's clean
    signal raises the metric (patching it from the corrupted run lowers it), blue where it lowers it.
    Edges into a head's q, k or v input end at the head, marked by line style (q solid, k dashed, v dotted)."""
    pos = _positions(n_layers, n_heads)
    part = edges[edges["in_circuit"].astype(bool)]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * n_heads + 2), max(4.0, 1.1 * (2 * n_layers + 2))))
    top = float(part[score].abs().max()) if len(part) else 1.0
    used: set = set()
    for r in part.itertuples(index=False):
        src = (r.src_kind, r.src_layer, r.src_head)
        dst = ("logits", n_layers, -1) if r.dst_kind == "logits" else (
            ("mlp", r.dst_layer, -1) if r.dst_kind == "mlp" else ("head", r.dst_layer, r.dst_head))
        used |= {src, dst}
        (x0, y0), (x1, y1) = pos[src], pos[dst]
        s = getattr(r, score)  # m(edge patched) - m(clean): negative where the edge's clean signal raises the metric
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops=dict(
            arrowstyle="-|>", lw=0.4 + 3.5 * abs(s) / top, color="#d62728" if s < 0 else "#1f77b4", alpha=0.75,
            ls={"k": "--", "v": ":"}.get(r.dst_kind, "-"), shrinkA=6, shrinkB=6))
    for key, (x, y) in pos.items():
        kind, la, h = key
        name = {"input": "input", "logits": "logits", "mlp": f"MLP {la}"}.get(kind, f"{la}.{h}")
        on = key in used
        ax.scatter([x], [y], s=260 if kind != "head" else 180, marker="s" if kind == "mlp" else "o",
                   color="#ffbf00" if on and kind == "mlp" else ("#9ecae1" if on else "#eeeeee"), zorder=3,
                   edgecolors="black" if on else "#cccccc")
        if n_heads <= 16 or kind != "head":
            ax.text(x, y, name, ha="center", va="center", fontsize=7 if kind == "head" else 8, zorder=4)
    ax.set_xlim(-1, n_heads + 0.6)
    ax.set_ylim(-0.8, 2 * n_layers + 1.8)
    ax.axis("off")
    ax.set_title(f"{title}\n{len(part)} edges (red: its clean signal raises the metric, blue: lowers it; "
                 "into q solid, k dashed, v dotted)", fontsize=9)
    save(fig, path)
