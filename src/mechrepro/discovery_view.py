"""What the IOI and Greater-Than reports show of edge-level discovery (rule ``edge_discovery``): shared by both
notebooks so that each stays a few lines. Reads ``results/<scale>/<slug>/discovery/``; computes nothing heavy.

Every string that came from a model or a config is escaped (:func:`mechrepro.report.escape`, ``html_table``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from mechrepro.report import escape, html_table

NAMES = {"exact": "exact edge patching", "eap": "EAP", "eap_ig": "EAP-IG"}


class DiscoveryResults:
    """The discovery outputs of one replication's results folder."""

    def __init__(self, results_dir: str | Path):
        d = Path(results_dir) / "discovery"
        self.summary = json.loads((d / "summary.json").read_text())
        self.edges = pd.read_csv(d / "edges.csv", keep_default_na=False)
        self.curves = pd.read_csv(d / "curves.csv")
        self.bootstrap = pd.read_csv(d / "bootstrap.csv")
        self.main = self.summary["config"]["main"]

    def headline(self) -> str:
        """One Markdown paragraph: how many edges a faithful circuit needs, against the random control."""
        s, m = self.summary, self.main
        frac = s["config"]["report_fraction"]
        text = (f"**Edge-level discovery ({NAMES[m]}, {s['n_edges']:,} edges over heads *and* MLPs):** keeping "
                f"{frac:.0%} of the edges ({s[f'{m}.circuit_edges']} after pruning) gives normalised faithfulness "
                f"f = {s[f'{m}.circuit_faithfulness']:.2f}; f ≥ 0.8 needs {_edges(s, m, 80)} and f ≥ 0.9 "
                f"{_edges(s, m, 90)} edges. CPR {s[f'{m}.cpr']:.2f}")
        if f"{m}.cpr_low" in s:
            text += f" (bootstrap 95% CI {s[f'{m}.cpr_low']:.2f}–{s[f'{m}.cpr_high']:.2f})"
        if "random.cpr_high" in s:
            text += (f" against {s['random.cpr_mean']:.2f} for random edges (95% of random orders below "
                     f"{s['random.cpr_high']:.2f})")
        nodes = ", ".join(escape(n) for n in s["circuit_nodes"]) or "none"
        return text + f". The circuit touches: {nodes}."

    def methods_table(self) -> str:
        s, rows = self.summary, []
        for m in s["config"]["methods"]:
            rows.append({"method": NAMES[m], "CPR (↑)": s[f"{m}.cpr"], "CMD (↓)": s[f"{m}.cmd"],
                         "edges for f ≥ 0.8": s[f"{m}.edges_needed_80"], "edges for f ≥ 0.9": s[f"{m}.edges_needed_90"],
                         f"f at {s['config']['report_fraction']:.0%}": s[f"{m}.circuit_faithfulness"],
                         "|score| Pearson r with exact": s.get(f"{m}.pearson_with_exact")})
        if "random.cpr_mean" in s:
            rows.append({"method": f"random edges ({s['config']['n_random']} orders)", "CPR (↑)": s["random.cpr_mean"],
                         "CMD (↓)": None, "edges for f ≥ 0.8": None, "edges for f ≥ 0.9": None,
                         f"f at {s['config']['report_fraction']:.0%}": None, "|score| Pearson r with exact": None})
        return html_table(pd.DataFrame(rows))

    def circuit_nodes_table(self) -> str:
        """The circuit's nodes with their direct effect: minus the main method's score of the node -> logits edge (a
        score is m(edge patched from the corrupted run) - m(clean), so its negative is what the node's clean direct
        output adds to the metric: its direct logit attribution along the task's metric, clean minus corrupted)."""
        e, col = self.edges, f"score_{self.main}"
        direct = -e[e["dst_kind"] == "logits"].set_index("edge")[col]
        rows = []
        for name in self.summary["circuit_nodes"]:
            d = direct.get(f"{name} -> logits")
            inside = e[(e["in_circuit"].astype(str) == "True") & e["edge"].str.startswith(f"{name} -> ")]
            rows.append({"node": name, "direct effect on the metric (clean minus corrupted)": d,
                         "sign": "—" if d is None else ("raises" if d > 0 else "lowers"),
                         "circuit edges out of it": len(inside)})
        return html_table(pd.DataFrame(rows))

    def top_edges(self, n: int = 12) -> str:
        e, col = self.edges, f"score_{self.main}"
        top = e.reindex(e[col].abs().sort_values(ascending=False).index).head(n)
        cols = ["edge", *[c for c in e.columns if c.startswith("score_")], "in_circuit", "selection_frequency"]
        return html_table(top[cols].rename(columns={"selection_frequency": "selected in bootstrap resamples"}))

    def protocol(self) -> str:
        s = self.summary
        return (f"Ablation: **{escape(s['ablation'])}**: {escape(s['protocol'])}. Selection: **{escape(s['selection'])}** "
                f"(then edges into nodes with no path to the logits are pruned). EAP-IG: {s['config']['ig_steps']} "
                f"steps. {s['n_prompts']} prompts; {s['config']['n_bootstrap']} bootstrap resamples; "
                f"{s['config']['n_random']} random orders; run on {escape(s['device'])}.")


def _edges(s: dict, m: str, level: int) -> str:
    n = s.get(f"{m}.edges_needed_{level}")
    return "—" if n is None else f"{n} ({n / s['n_edges']:.1%})"
