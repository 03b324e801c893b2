"""Flatten a replication's analysis summary into metrics.json (rules `ioi_metrics`, `greater_than_metrics`)."""

from mechrepro.io import log_to, read_json, write_json

snakemake = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(snakemake.log[0]):
    summary = read_json(snakemake.input.summary)
    metrics = {"meta.random_weights": summary["random_weights"]}
    for k, v in summary.items():  # numbers only: None (e.g. the precision of an empty class) is "not computed"
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            metrics[k] = v
    write_json(snakemake.output.metrics, metrics)
    print(metrics)
