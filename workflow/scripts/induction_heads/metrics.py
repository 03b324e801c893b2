"""Flatten the analysis and phase-change summaries into metrics.json (rule `induction_heads_metrics`).

Keys name roles, not models, so one claims file serves every scale: ``main.*`` for the main model,
``phase.<n>l.*`` for the attention-only model with n layers.
"""

import pandas as pd

from mechrepro.io import log_to, read_json, write_json
from mechrepro.models.registry import get_spec
from mechrepro.tasks.induction_heads import phase_change_summary

snakemake = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(snakemake.log[0]):
    analysis = read_json(snakemake.input.analysis)
    metrics = {"meta.random_weights": analysis["random_weights"]}
    metrics.update({f"main.{k}": v for k, v in analysis.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    for name, path in zip(snakemake.params.phase_models, snakemake.input.phase, strict=True):
        n = get_spec(name).n_layers
        metrics.update({f"phase.{n}l.{k}": v for k, v in phase_change_summary(pd.read_csv(path)).items()})
    write_json(snakemake.output.metrics, metrics)
    print(metrics)
