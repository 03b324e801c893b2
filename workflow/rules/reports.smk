# Claims, papermill reports and the index page; generic over the replications in SLUGS.


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
