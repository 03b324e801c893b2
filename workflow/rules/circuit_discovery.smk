# Circuit discovery scored against known circuits: Conmy et al. 2023 (ACDC), Miller et al. 2024, Gupta et al. 2024
# (InterpBench). Library: src/mechrepro/groundtruth/ (the models), src/mechrepro/tasks/circuit_discovery.py (the
# scoring), src/mechrepro/techniques/roc.py.

CD = CFG["circuit_discovery"]


wildcard_constraints:
    truth=_alternatives(CD["truths"]),


rule circuit_discovery_truth:
    output:
        weights="results/{scale}/circuit_discovery/truths/{truth}/weights.safetensors",
        config="results/{scale}/circuit_discovery/truths/{truth}/config.json",
        edges="results/{scale}/circuit_discovery/truths/{truth}/edges.csv",
        card="results/{scale}/circuit_discovery/truths/{truth}/card.json",
    params:
        section=CD,
        truth="{truth}",
    threads: 2
    log:
        "results/{scale}/logs/circuit_discovery_truth_{truth}.log",
    benchmark:
        "results/{scale}/benchmarks/circuit_discovery_truth_{truth}.tsv"
    resources:
        mem_mb=3000,
        runtime=20,
    conda:
        ENV
    script:
        "../scripts/circuit_discovery/truth.py"


rule circuit_discovery_score:
    input:
        card="results/{scale}/circuit_discovery/truths/{truth}/card.json",
    output:
        auroc="results/{scale}/circuit_discovery/scores/{truth}/auroc.csv",
        roc="results/{scale}/circuit_discovery/scores/{truth}/roc.csv",
        curves="results/{scale}/circuit_discovery/scores/{truth}/curves.csv",
        nodes="results/{scale}/circuit_discovery/scores/{truth}/nodes.csv",
        summary="results/{scale}/circuit_discovery/scores/{truth}/summary.json",
    params:
        section=CD,
    threads: 2
    log:
        "results/{scale}/logs/circuit_discovery_score_{truth}.log",
    benchmark:
        "results/{scale}/benchmarks/circuit_discovery_score_{truth}.tsv"
    resources:
        mem_mb=3000,
        runtime=20,
    conda:
        ENV
    script:
        "../scripts/circuit_discovery/score.py"


rule circuit_discovery_figures:
    input:
        cards=expand("results/{{scale}}/circuit_discovery/truths/{truth}/card.json", truth=CD["truths"]),
        auroc=expand("results/{{scale}}/circuit_discovery/scores/{truth}/auroc.csv", truth=CD["truths"]),
        roc=expand("results/{{scale}}/circuit_discovery/scores/{truth}/roc.csv", truth=CD["truths"]),
        curves=expand("results/{{scale}}/circuit_discovery/scores/{truth}/curves.csv", truth=CD["truths"]),
        nodes=expand("results/{{scale}}/circuit_discovery/scores/{truth}/nodes.csv", truth=CD["truths"]),
    output:
        auroc=report("results/{scale}/circuit_discovery/figures/auroc.png", category="circuit_discovery"),
        roc=report("results/{scale}/circuit_discovery/figures/roc.png", category="circuit_discovery"),
        circuits=report("results/{scale}/circuit_discovery/figures/circuits.png", category="circuit_discovery"),
        faithfulness=report("results/{scale}/circuit_discovery/figures/faithfulness.png", category="circuit_discovery"),
    params:
        truths=CD["truths"],
    log:
        "results/{scale}/logs/circuit_discovery_figures.log",
    conda:
        ENV
    script:
        "../scripts/circuit_discovery/figures.py"
