"""Flatten a replication's result summaries into metrics.json (rule `metrics`; the sources and their key prefixes
are its declaration's ``metrics``, replications/<slug>/replication.yaml). Numbers only: None (e.g. the precision of
an empty class) is "not computed", and strings and lists are not metrics."""

from mechrepro.io import log_to, read_json, write_json

snakemake = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(snakemake.log[0]):
    sources = [read_json(path) for path in snakemake.input.sources]
    metrics = {"meta.random_weights": sources[0]["random_weights"]}
    for prefix, values in zip(snakemake.params.prefixes, sources, strict=True):
        for k, v in values.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                metrics[prefix + k] = v
    write_json(snakemake.output.metrics, metrics)
    print(metrics)
