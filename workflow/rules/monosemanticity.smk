# Monosemanticity: Bricken et al. 2023, Towards Monosemanticity; Elhage et al. 2022, Toy Models of Superposition.
# Library: src/mechrepro/sae/ (superposition.py, planted.py, train.py, evaluate.py, metrics.py)

MONO = CFG["monosemanticity"]


rule monosemanticity_superposition:
    output:
        summary="results/{scale}/monosemanticity/superposition/summary.json",
        tensors="results/{scale}/monosemanticity/superposition/tensors.safetensors",
    params:
        section=MONO["superposition"],
    threads: 1
    log:
        "results/{scale}/logs/monosemanticity_superposition.log",
    benchmark:
        "results/{scale}/benchmarks/monosemanticity_superposition.tsv"
    resources:
        mem_mb=2000,
        runtime=15,
    conda:
        ENV
    script:
        "../scripts/monosemanticity/superposition.py"


rule monosemanticity_planted:
    output:
        summary="results/{scale}/monosemanticity/planted/summary.json",
        best_cosine="results/{scale}/monosemanticity/planted/best_cosine.csv",
    params:
        section=MONO["planted"],
    threads: 1
    log:
        "results/{scale}/logs/monosemanticity_planted.log",
    benchmark:
        "results/{scale}/benchmarks/monosemanticity_planted.tsv"
    resources:
        mem_mb=2000,
        runtime=15,
    conda:
        ENV
    script:
        "../scripts/monosemanticity/planted.py"


rule monosemanticity_sae:
    input:
        models=model_inputs([MONO["model"]]),
        corpus=mono_corpus("train"),
    output:
        cfg="results/{scale}/monosemanticity/saes/x{expansion}/cfg.json",
        weights="results/{scale}/monosemanticity/saes/x{expansion}/sae_weights.safetensors",
    params:
        section=mono_training(),
        expansion="{expansion}",
        models_dir=models_dir,
    # one thread each: the dictionaries train side by side on the cores
    threads: 1
    log:
        "results/{scale}/logs/monosemanticity_sae_x{expansion}.log",
    benchmark:
        "results/{scale}/benchmarks/monosemanticity_sae_x{expansion}.tsv"
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=GPU,
    conda:
        ENV
    script:
        "../scripts/monosemanticity/train_sae.py"


rule monosemanticity_evaluate:
    input:
        models=model_inputs(mono_models()),
        corpus=mono_corpus("heldout"),
        saes=expand("results/{{scale}}/monosemanticity/saes/x{expansion}/cfg.json", expansion=mono_expansions()),
        superposition="results/{scale}/monosemanticity/superposition/summary.json",
        planted="results/{scale}/monosemanticity/planted/summary.json",
    output:
        summary="results/{scale}/monosemanticity/analysis/summary.json",
        dictionaries="results/{scale}/monosemanticity/analysis/dictionaries.csv",
        ground_truth="results/{scale}/monosemanticity/analysis/ground_truth.csv",
        features="results/{scale}/monosemanticity/analysis/features.json",
        specificity="results/{scale}/monosemanticity/analysis/specificity.csv",
        autointerp="results/{scale}/monosemanticity/analysis/autointerp.csv",
        probes="results/{scale}/monosemanticity/analysis/probes.csv",
        tensors="results/{scale}/monosemanticity/analysis/tensors.safetensors",
    params:
        section=MONO,
        models_dir=models_dir,
    threads: 2
    log:
        "results/{scale}/logs/monosemanticity_evaluate.log",
    benchmark:
        "results/{scale}/benchmarks/monosemanticity_evaluate.tsv"
    resources:
        mem_mb=8000,
        runtime=30,
        gpu=GPU,
    conda:
        ENV
    script:
        "../scripts/monosemanticity/evaluate.py"


rule monosemanticity_figures:
    input:
        superposition="results/{scale}/monosemanticity/superposition/tensors.safetensors",
        superposition_summary="results/{scale}/monosemanticity/superposition/summary.json",
        planted="results/{scale}/monosemanticity/planted/best_cosine.csv",
        summary="results/{scale}/monosemanticity/analysis/summary.json",
        dictionaries="results/{scale}/monosemanticity/analysis/dictionaries.csv",
        ground_truth="results/{scale}/monosemanticity/analysis/ground_truth.csv",
        specificity="results/{scale}/monosemanticity/analysis/specificity.csv",
        autointerp="results/{scale}/monosemanticity/analysis/autointerp.csv",
        probes="results/{scale}/monosemanticity/analysis/probes.csv",
        features="results/{scale}/monosemanticity/analysis/features.json",
        tensors="results/{scale}/monosemanticity/analysis/tensors.safetensors",
    output:
        sweep=report("results/{scale}/monosemanticity/figures/superposition_sweep.png", category="monosemanticity"),
        dimensionality=report("results/{scale}/monosemanticity/figures/dimensionality.png", category="monosemanticity"),
        geometry=report("results/{scale}/monosemanticity/figures/geometry.png", category="monosemanticity"),
        phase=report("results/{scale}/monosemanticity/figures/phase_diagram.png", category="monosemanticity"),
        planted=report("results/{scale}/monosemanticity/figures/planted.png", category="monosemanticity"),
        dictionaries=report("results/{scale}/monosemanticity/figures/dictionaries.png", category="monosemanticity"),
        density=report("results/{scale}/monosemanticity/figures/density.png", category="monosemanticity"),
        auroc=report("results/{scale}/monosemanticity/figures/auroc.png", category="monosemanticity"),
        splitting=report("results/{scale}/monosemanticity/figures/splitting.png", category="monosemanticity"),
        splitting_latent=report("results/{scale}/monosemanticity/figures/splitting_latent.png", category="monosemanticity"),
        interpretability=report("results/{scale}/monosemanticity/figures/interpretability.png", category="monosemanticity"),
        probes=report("results/{scale}/monosemanticity/figures/probes.png", category="monosemanticity"),
    log:
        "results/{scale}/logs/monosemanticity_figures.log",
    conda:
        ENV
    script:
        "../scripts/monosemanticity/figures.py"
