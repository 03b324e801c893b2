# IOI: Wang et al. 2022, Interpretability in the Wild. Library: src/mechrepro/tasks/ioi.py, ioi_circuit.py

IOI = CFG["ioi"]


rule ioi_analysis:
    input:
        models=model_inputs([IOI["model"]]),
    output:
        summary="results/{scale}/ioi/analysis/summary.json",
        circuit="results/{scale}/ioi/analysis/circuit.json",
        heads="results/{scale}/ioi/analysis/heads.csv",
        patching="results/{scale}/ioi/analysis/patching.safetensors",
        validation="results/{scale}/ioi/analysis/validation.json",
        completeness="results/{scale}/ioi/analysis/completeness.csv",
        minimality="results/{scale}/ioi/analysis/minimality.csv",
        scatter="results/{scale}/ioi/analysis/scatter.csv",
    params:
        section=IOI,
        models_dir=models_dir,
    threads: 2
    log:
        "results/{scale}/logs/ioi_analysis.log",
    benchmark:
        "results/{scale}/benchmarks/ioi_analysis.tsv"
    resources:
        mem_mb=6000,
        runtime=30,
        gpu=GPU,
    conda:
        ENV
    script:
        "../scripts/ioi/analysis.py"


rule ioi_figures:
    input:
        summary="results/{scale}/ioi/analysis/summary.json",
        circuit="results/{scale}/ioi/analysis/circuit.json",
        patching="results/{scale}/ioi/analysis/patching.safetensors",
        validation="results/{scale}/ioi/analysis/validation.json",
        completeness="results/{scale}/ioi/analysis/completeness.csv",
        minimality="results/{scale}/ioi/analysis/minimality.csv",
        scatter="results/{scale}/ioi/analysis/scatter.csv",
    output:
        activation=report("results/{scale}/ioi/figures/activation_patching.png", category="ioi"),
        path=report("results/{scale}/ioi/figures/path_patching.png", category="ioi"),
        scatter=report("results/{scale}/ioi/figures/attention_vs_projection.png", category="ioi"),
        circuit=report("results/{scale}/ioi/figures/circuit.png", category="ioi"),
        validation=report("results/{scale}/ioi/figures/validation.png", category="ioi"),
    log:
        "results/{scale}/logs/ioi_figures.log",
    conda:
        ENV
    script:
        "../scripts/ioi/figures.py"
