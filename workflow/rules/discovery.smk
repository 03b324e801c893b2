# Edge-level circuit discovery (EAP, EAP-IG, exact edge patching) with faithfulness curves, on the IOI and
# Greater-Than tasks. Library: src/mechrepro/techniques/{graph,edges,selection,discovery,faithfulness}.py,
# src/mechrepro/tasks/edge_discovery.py. Hanna et al. 2024 (Have Faith in Faithfulness); MIB (Mueller et al. 2025).


rule edge_discovery:
    input:
        models=discovery_model_files,
    output:
        edges="results/{scale}/{slug}/discovery/edges.csv",
        curves="results/{scale}/{slug}/discovery/curves.csv",
        bootstrap="results/{scale}/{slug}/discovery/bootstrap.csv",
        summary="results/{scale}/{slug}/discovery/summary.json",
    wildcard_constraints:
        slug=_alternatives(DISCOVERY_SLUGS),
    params:
        task="{slug}",
        section=discovery_section,
        discovery=CFG["discovery"],
        models_dir=models_dir,
    threads: 2
    log:
        "results/{scale}/logs/{slug}_edge_discovery.log",
    benchmark:
        "results/{scale}/benchmarks/{slug}_edge_discovery.tsv"
    resources:
        mem_mb=6000,
        runtime=30,
        gpu=GPU,
    conda:
        ENV
    script:
        "../scripts/edge_discovery.py"


rule edge_discovery_figures:
    input:
        edges="results/{scale}/{slug}/discovery/edges.csv",
        curves="results/{scale}/{slug}/discovery/curves.csv",
        summary="results/{scale}/{slug}/discovery/summary.json",
    output:
        curves=report("results/{scale}/{slug}/figures/faithfulness_curves.png", category="discovery"),
        graph=report("results/{scale}/{slug}/figures/edge_circuit.png", category="discovery"),
    wildcard_constraints:
        slug=_alternatives(DISCOVERY_SLUGS),
    log:
        "results/{scale}/logs/{slug}_edge_discovery_figures.log",
    conda:
        ENV
    script:
        "../scripts/edge_discovery_figures.py"
