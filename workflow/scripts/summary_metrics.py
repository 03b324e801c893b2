"""Flatten a replication's analysis summary into metrics.json (rules `ioi_metrics`, `greater_than_metrics`)."""

from mechrepro.io import log_to, read_json, write_json

snakemake = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(snakemake.log[0]):
    summary = read_json(snakemake.input.summary)
    metrics = {"meta.random_weights": summary["random_weights"]}
    sources = [("", summary)]
    if "discovery" in snakemake.input.keys():  # edge-level discovery (rule edge_discovery): keys "edge.<...>"
        sources.append(("edge.", read_json(snakemake.input.discovery)))
    for prefix, values in sources:
        for k, v in values.items():  # numbers only: None (e.g. the precision of an empty class) is "not computed"
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                metrics[prefix + k] = v
    write_json(snakemake.output.metrics, metrics)
    print(metrics)
