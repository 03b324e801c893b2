"""Figures of the induction-heads replication (rule `induction_heads_figures`)."""

import pandas as pd

from mechrepro.io import load_tensors, log_to, read_json
from mechrepro.plots import induction_heads as fig

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
inp, out = snakemake.input, snakemake.output

with log_to(snakemake.log[0]):
    summary = read_json(inp.analysis)
    phase = {m: pd.read_csv(p) for m, p in zip(snakemake.params.phase_models, inp.phase, strict=True)}
    fig.phase_change(phase, tuple(snakemake.params.icl), out.phase, snakemake.params.threshold)
    fig.head_scores(pd.read_csv(inp.scores), summary["model"], out.scores)
    fig.attention_patterns(load_tensors(inp.patterns), summary["model"], out.patterns)
    fig.per_token_loss(pd.read_csv(inp.loss), summary["model"], out.loss)
    fig.ablation(pd.read_csv(inp.ablation), summary["model"], out.ablation)
    fig.k_composition(pd.read_csv(inp.composition), summary, out.composition, snakemake.params.threshold)
