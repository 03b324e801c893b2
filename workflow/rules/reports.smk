# Metrics, claims, papermill reports and the index page; generic over the replications (REGISTRY, SLUGS).


rule metrics:
    input:
        sources=metric_sources,
    output:
        metrics="results/{scale}/{slug}/metrics.json",
    params:
        prefixes=metric_prefixes,
    log:
        "results/{scale}/logs/{slug}_metrics.log",
    conda:
        ENV
    script:
        "../scripts/metrics.py"


rule claims:
    input:
        metrics="results/{scale}/{slug}/metrics.json",
        claims="replications/{slug}/claims.yaml",
    output:
        claims="results/{scale}/{slug}/claims.json",
    params:
        scale=SCALE,
    log:
        "results/{scale}/logs/{slug}_claims.log",
    conda:
        ENV
    script:
        "../scripts/claims.py"


rule report:
    input:
        notebook="replications/{slug}/report.ipynb",
        claims="results/{scale}/{slug}/claims.json",
        figures=report_figures,
    output:
        html="reports/{scale}/{version}/{slug}.html",
        notebook="reports/{scale}/{version}/{slug}.ipynb",
        provenance="reports/{scale}/{version}/{slug}.provenance.json",
    params:
        repo=workflow.basedir,
        config=CFG,
        config_hash=CONFIG_HASH,
        models=report_models,
        seeds=report_seeds,
        benchmarks=report_benchmarks,
        results_dir=slug_results,
        template="workflow/templates/offline",
    log:
        "results/{scale}/logs/{slug}_report_{version}.log",
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    script:
        "../scripts/render_report.py"


rule report_index:
    input:
        claims=expand("results/{{scale}}/{slug}/claims.json", slug=SLUGS),
        html=expand("reports/{{scale}}/{version}/{slug}.html", slug=SLUGS, version=VERSION),
        provenance=expand("reports/{{scale}}/{version}/{slug}.provenance.json", slug=SLUGS, version=VERSION),
        models_html=f"reports/{{scale}}/{VERSION}/models.html",
        capabilities=expand("results/{{scale}}/models/{model}/capabilities.json", model=CAPABILITY_MODELS),
    output:
        manifest=f"reports/{{scale}}/{VERSION}/manifest.json",
        index="reports/{scale}/index.html",
    params:
        scale=SCALE,
        version=VERSION,
        models=CAPABILITY_MODELS,
        models_dir=models_dir,
    log:
        "results/{scale}/logs/report_index.log",
    conda:
        ENV
    script:
        "../scripts/index.py"


# Each report's figures (its figures rule's outputs, then edge discovery's where it runs), models and seeds.
for _slug, _rep in REGISTRY.items():
    _figures = expand(list(getattr(rules, _rep.figures_rule).output), scale=SCALE)
    if _rep.discovery:
        _figures += expand(list(rules.edge_discovery_figures.output), scale=SCALE, slug=_slug)
    REPLICATIONS[_slug] = {"figures": _figures, "models": _rep.all_models(CFG), "seeds": replication_seeds(_rep)}
