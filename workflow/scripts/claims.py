"""Check a replication's claims against its metrics (rule `claims`)."""

from mechrepro.claims import evaluate, load_claims, summarize
from mechrepro.io import log_to, read_json, write_json

snakemake = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(snakemake.log[0]):
    metrics = read_json(snakemake.input.metrics)
    rows = evaluate(load_claims(snakemake.input.claims), metrics, snakemake.params.scale,
                    random_weights=bool(metrics.get("meta.random_weights", False)))
    result = {"slug": snakemake.wildcards.slug, "scale": snakemake.params.scale, "claims": rows,
              "summary": summarize(rows)}
    write_json(snakemake.output.claims, result)
    for r in rows:
        print(f"[{r['status']:>14}] {r['id']}: {r['why']}")
