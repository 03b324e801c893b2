"""Figures of the Greater-Than replication (Hanna et al. 2023, *How does GPT-2 compute greater-than?*)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from mechrepro.plots import head_heatmap, save, signed_heatmap
from mechrepro.tasks.greater_than import START_YYS
from mechrepro.techniques.circuits import parse

HEATMAP_TITLES = {"model": "full model", "discovered": "discovered circuit (paper protocol)",
                  "paper_circuit": "Hanna et al.'s circuit"}


def _year_map(ax, values: np.ndarray, title: str, **kw):
    """[97 start YY, 100 predicted year], start years on the y axis, the diagonal YY = year drawn."""
    im = ax.imshow(values, aspect="auto", origin="lower", extent=(-0.5, 99.5, START_YYS[0] - 0.5, START_YYS[-1] + 0.5),
                   **kw)
    ax.plot([START_YYS[0], START_YYS[-1]], [START_YYS[0], START_YYS[-1]], color="black", lw=0.6, ls="--")
    ax.set_xlabel("predicted year (two digits)")
    ax.set_ylabel("start year YY")
    ax.set_title(title, fontsize=10)
    return im


def probability_heatmaps(maps: dict[str, np.ndarray], summary: dict, model: str, path) -> None:
    """Hanna et al. Fig. 2 / Fig. 5 (right): mean probability of each year given the start year, for the full
    model and for the circuits (outside a circuit, activations come from the 01 prompts)."""
    shown = [k for k in HEATMAP_TITLES if k in maps]
    fig, axes = plt.subplots(1, len(shown), figsize=(5.2 * len(shown), 4.3), squeeze=False)
    # the colour scale of the bulk (a few start years near 98 put almost all their mass on 99)
    vmax = max(float(np.nanpercentile(maps[k], 99)) for k in shown)
    for ax, k in zip(axes[0], shown, strict=True):
        pd_key = "prob_diff" if k == "model" else f"{k}.prob_diff"
        im = _year_map(ax, maps[k], f"{HEATMAP_TITLES[k]}\nprob. diff. {100 * summary.get(pd_key, np.nan):.1f}%",
                       cmap="Reds", vmin=0, vmax=vmax)
    fig.colorbar(im, ax=axes[0].tolist(), label="probability (scale capped at the 99th percentile)")
    fig.suptitle(f"{model}: probability of each end year (dashed: the start year)", y=1.04)
    save(fig, path)


def step_order(key: str) -> tuple:
    """Path-patching steps in the order the search ran them (logits, END MLPs, END heads' k/v, YY MLPs)."""
    rank = 0 if key == "logits" else 1 if key.startswith("end_mlps") else 2 if key == "end_heads_kv" else 3
    return rank, [-int(x) for x in key.split("_")[2:]] if "_mlps_" in key else []


def path_patching(steps: dict[str, np.ndarray], model: str, path) -> None:
    """One heatmap per path-patching step: [layer, heads + MLP], relative change of the probability difference."""
    steps = {k: steps[k] for k in sorted(steps, key=step_order)}
    fig, axes = plt.subplots(1, len(steps), figsize=(max(4.5, 0.45 * next(iter(steps.values())).shape[1] + 2.5)
                                                     * len(steps), 4), squeeze=False)
    for ax, (key, table) in zip(axes[0], steps.items(), strict=True):
        im = signed_heatmap(ax, table, _step_title(key))
        n_heads = table.shape[1] - 1
        ax.set_xticks(range(n_heads + 1), [str(h) for h in range(n_heads)] + ["MLP"])
        ax.set_xlabel("head (last column: the layer's MLP)")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"{model}: path patching (01 -> clean), relative change of the probability difference (%)", y=1.04)
    save(fig, path)


def _step_title(key: str) -> str:
    if key == "logits":
        return "to the logits, senders at END"
    if key == "end_heads_kv":
        return "to END heads' keys & values, senders at YY"
    role, _, layers = key.partition("_mlps_")
    return f"to MLP {', '.join(layers.split('_'))} input, senders at {role.upper()}"


def mlp_contributions(mlp_maps: list[np.ndarray], fractions: list[float], circuit_mlps: list[int], model: str,
                      path) -> None:
    """Hanna et al. §4 (Fig. 7): each MLP's direct contribution to every year's logit at END (centred over the
    years), per start year. Up-weighting later years shows as red above the dashed diagonal."""
    if not mlp_maps:
        fig, ax = plt.subplots(figsize=(5, 2))
        ax.text(0.5, 0.5, "attention-only model: no MLPs", ha="center", va="center")
        ax.axis("off")
        save(fig, path)
        return
    fig, axes = plt.subplots(1, len(mlp_maps), figsize=(4.6 * len(mlp_maps), 4), squeeze=False)
    for la, (ax, m) in enumerate(zip(axes[0], mlp_maps, strict=True)):
        lim = max(float(np.nanmax(np.abs(m))), 1e-6)
        mark = " (in circuit)" if la in circuit_mlps else ""
        im = _year_map(ax, m, f"MLP {la}{mark}\nup-weights later years for {100 * fractions[la]:.0f}% of YY",
                       cmap="RdBu_r", vmin=-lim, vmax=lim)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"{model}: the MLPs' direct effect on the year logits at END (logit lens, centred)", y=1.04)
    save(fig, path)


def _layer(comp: str) -> int:
    return parse(comp)[0]


def circuit_diagram(circuit: dict, n_layers: int, model: str, path) -> None:
    """The circuit by layer and position: components at the start year's YY position feed the heads at END
    (through their keys and values), which feed the MLPs at END, which write the year logits; Hanna et al.'s
    GPT-2 small circuit beside it when the model has its shape."""
    panels = [(f"{model}: discovered here", circuit["discovered"])]
    if circuit.get("gpt2_shaped"):
        panels.append(("Hanna et al. 2023 (GPT-2 small)", circuit["paper"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 0.45 * n_layers + 2.8), squeeze=False)
    for ax, (title, circ) in zip(axes[0], panels, strict=True):
        c = circ["roles"]  # role ("end", "yy") -> part names
        where: dict[tuple[str, str], tuple[float, float]] = {}
        for x, role in ((0.0, "yy"), (1.0, "end")):
            per_layer: dict[tuple[int, bool], int] = {}
            for comp in c[role]:
                mlp, layer = comp.startswith("MLP"), _layer(comp)
                k = per_layer.get((layer, mlp), 0)
                per_layer[(layer, mlp)] = k + 1
                where[(role, comp)] = (x + (0.3 if mlp else -0.25 + 0.17 * k), layer)
        top = (1.0, n_layers - 0.2)
        heads = sorted((b for b in c["end"] if not b.startswith("MLP")), key=_layer)
        mlps = sorted((b for b in c["end"] if b.startswith("MLP")), key=_layer)
        arrows = []  # a summary of the paths: YY -> END heads (keys, values) -> next MLP -> ... -> logits
        if c["yy"] and heads:
            arrows.append((where[("yy", max(c["yy"], key=_layer))], where[("end", heads[0])]))
        for h in heads:
            nxt = next((m for m in mlps if _layer(m) >= _layer(h)), None)
            arrows.append((where[("end", h)], where[("end", nxt)] if nxt else top))
        arrows += [(where[("end", a)], where[("end", b)]) for a, b in zip(mlps, mlps[1:], strict=False)]
        if mlps:
            arrows.append((where[("end", mlps[-1])], top))
        for start, end in arrows:
            ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "->", "color": "#999999", "lw": 0.6,
                                                             "shrinkA": 9, "shrinkB": 9})
        for (_, comp), (x, y) in where.items():
            ax.text(x, y, comp, ha="center", va="center", fontsize=8, zorder=3,
                    bbox={"boxstyle": "round", "fc": "#fdd0a2" if comp.startswith("MLP") else "#c6dbef", "ec": "gray"})
        ax.text(*top, "year logits", ha="center", va="bottom", fontsize=9, fontweight="bold")
        if not c["yy"] and not c["end"]:
            ax.text(0.5, n_layers / 2, "no component found", ha="center")
        ax.set_xlim(-0.6, 1.6)
        ax.set_ylim(-0.8, n_layers + 0.4)
        ax.set_xticks([0, 1], ["YY (start year)", "END (last token)"])
        ax.set_yticks(range(n_layers))
        ax.set_ylabel("layer")
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.2)
    fig.text(0.5, -0.02, "blue: attention heads, orange: MLPs; arrows: YY -> END heads (keys, values) -> MLPs -> year logits", ha="center",
             fontsize=8)
    save(fig, path)


def faithfulness(validation: list[dict], attention: np.ndarray, circuit_heads: list[str], model: str, path) -> None:
    """Probability difference of the full model, the 01 run and each circuit (Hanna et al. §3.3), and each head's
    attention from END to YY."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    labels = [f"{r['circuit']}\n{r['protocol']}" if r["circuit"].startswith(("disc", "paper")) else r["circuit"]
              for r in validation]
    labels = [lab.replace("discovered_all_positions\nall_positions", "discovered\nall positions") for lab in labels]
    colors = {"model": "#333333", "empty": "#bdbdbd", "paper_circuit": "#7f7f7f"}
    vals = [100 * r["prob_diff"] for r in validation]
    axes[0].bar(range(len(vals)), vals, color=[colors.get(r["circuit"], "#1f77b4") for r in validation])
    for i, r in enumerate(validation):
        axes[0].text(i, vals[i], f"{100 * r['faithfulness']:.0f}% of M" if r["circuit"] != "model" else "",
                     ha="center", va="bottom", fontsize=8)
    axes[0].set_xticks(range(len(vals)), [lab.replace("empty", "empty\n(all 01)") for lab in labels], fontsize=8)
    axes[0].set_ylabel("probability difference (%)")
    axes[0].axhline(0, color="black", lw=0.8)
    axes[0].set_title("faithfulness: outside the circuit, activations from the 01 prompts")
    im = head_heatmap(axes[1], attention, "attention END -> YY (circuit heads boxed)", vmin=0, vmax=1)
    for h in circuit_heads:
        la, hd = map(int, h.split("."))
        axes[1].add_patch(plt.Rectangle((hd - 0.5, la - 0.5), 1, 1, fill=False, ec="red", lw=2))
    fig.colorbar(im, ax=axes[1])
    fig.suptitle(f"{model}: circuit evaluation (Hanna et al. §3.3) and attention to the start year", y=1.03)
    save(fig, path)
