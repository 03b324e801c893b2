"""AUROC bars, ROC curves, the known circuits beside what each method found, faithfulness curves (rule
`circuit_discovery_figures`)."""

import pandas as pd

from mechrepro.io import log_to, read_json
from mechrepro.plots import circuit_discovery as fig

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
inp, out, truths = snakemake.input, snakemake.output, snakemake.params.truths

with log_to(snakemake.log[0]):
    cards = {t: read_json(p) for t, p in zip(truths, inp.cards, strict=True)}

    def tables(paths):  # node names ("0.1", "MLP 2") stay strings
        return {t: pd.read_csv(p, dtype={"node": str}) for t, p in zip(truths, paths, strict=True)}

    fig.auroc_bars(tables(inp.auroc), cards, out.auroc)
    fig.roc_curves(tables(inp.roc), cards, out.roc)
    fig.circuits(tables(inp.nodes), cards, out.circuits)
    fig.faithfulness(tables(inp.curves), cards, out.faithfulness)
