# Greater-Than: Hanna et al. 2023, How does GPT-2 compute greater-than? Library: src/mechrepro/tasks/greater_than.py,
# greater_than_circuit.py

GT = CFG["greater_than"]


rule greater_than_analysis:
    input:
        models=model_inputs([GT["model"]]),
    output:
        summary="results/{scale}/greater_than/analysis/summary.json",
        circuit="results/{scale}/greater_than/analysis/circuit.json",
        tensors="results/{scale}/greater_than/analysis/tensors.safetensors",
        validation="results/{scale}/greater_than/analysis/validation.json",
        components="results/{scale}/greater_than/analysis/components.csv",
        completeness="results/{scale}/greater_than/analysis/completeness.csv",
        minimality="results/{scale}/greater_than/analysis/minimality.csv",
    params:
        section=GT,
        models_dir=models_dir,
    threads: 2
    log:
        "results/{scale}/logs/greater_than_analysis.log",
    benchmark:
        "results/{scale}/benchmarks/greater_than_analysis.tsv"
    resources:
        mem_mb=6000,
        runtime=30,
        gpu=GPU,
    conda:
        ENV
    script:
        "../scripts/greater_than/analysis.py"


rule greater_than_figures:
    input:
        summary="results/{scale}/greater_than/analysis/summary.json",
        circuit="results/{scale}/greater_than/analysis/circuit.json",
        tensors="results/{scale}/greater_than/analysis/tensors.safetensors",
        validation="results/{scale}/greater_than/analysis/validation.json",
    output:
        heatmaps=report("results/{scale}/greater_than/figures/probability_heatmaps.png", category="greater_than"),
        path=report("results/{scale}/greater_than/figures/path_patching.png", category="greater_than"),
        mlps=report("results/{scale}/greater_than/figures/mlp_contributions.png", category="greater_than"),
        circuit=report("results/{scale}/greater_than/figures/circuit.png", category="greater_than"),
        faithfulness=report("results/{scale}/greater_than/figures/faithfulness.png", category="greater_than"),
    log:
        "results/{scale}/logs/greater_than_figures.log",
    conda:
        ENV
    script:
        "../scripts/greater_than/figures.py"
