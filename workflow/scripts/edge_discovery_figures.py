"""Faithfulness curves and the discovered edge circuit as a graph (rule `edge_discovery_figures`)."""

import pandas as pd

from mechrepro.io import log_to, read_json
from mechrepro.plots import discovery as fig

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
inp, out = snakemake.input, snakemake.output

with log_to(snakemake.log[0]):
    summary = read_json(inp.summary)
    main = summary["config"]["main"]
    task = {"ioi": "IOI (logit difference)", "greater_than": "Greater-Than (probability difference)"}[
        snakemake.wildcards.slug]
    fig.faithfulness_curves(pd.read_csv(inp.curves), summary, f"{summary['model']}, {task}: faithfulness of the "
                            f"top edges ({summary['ablation']} ablation)", out.curves)
    fig.edge_circuit(pd.read_csv(inp.edges), f"score_{main}", summary["n_layers"], summary["n_heads"],
                     f"{summary['model']}, {task}: the {main} circuit at {summary['config']['report_fraction']:.0%} "
                     "of the edges", out.graph)
