"""mechrepro: mechanistic-interpretability papers reproduced as one Snakemake DAG (the replications: replications/*/).

    snakemake --cores all                                   # toy scale (default)
    snakemake --cores 2 --config scale=ci                   # the CI subset
    snakemake --cores all --config scale=paper              # the papers' models (hub once, a GPU)
    snakemake --cores 2 --config scale=paper smoke=true     # paper path offline: a fabricated hub cache

The config of the chosen scale (workflow/config/<scale>.yaml, overridable with --config) is
validated against workflow/schemas/config.schema.yaml before any job starts.
"""

from snakemake.utils import min_version

min_version("9.0")


include: "workflow/rules/common.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/discovery.smk"


# Each replication's own rules (its declaration, replications/<slug>/replication.yaml, names the file).
for _rep in REGISTRY.values():

    include: _rep.rules


include: "workflow/rules/reports.smk"


rule all:
    default_target: True
    input:
        expand("results/{scale}/{slug}/claims.json", scale=SCALE, slug=SLUGS),
        f"reports/{SCALE}/index.html",
