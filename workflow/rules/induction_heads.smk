# Induction heads: Olsson et al. 2022; Elhage et al. 2021. Library: src/mechrepro/tasks/induction_heads.py

IH = CFG["induction_heads"]


rule induction_heads_probes:
    input:
        models=model_inputs([IH["main_model"]]),
    output:
        probes="results/{scale}/induction_heads/probes.safetensors",
    params:
        section=IH,
        models_dir=models_dir,
    log:
        "results/{scale}/logs/induction_heads_probes.log",
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV
    script:
        "../scripts/induction_heads/probes.py"


rule induction_heads_phase:
    input:
        card="results/{scale}/models/{model}/model.json",
        checkpoints="results/{scale}/models/{model}/checkpoints.json",
        probes="results/{scale}/induction_heads/probes.safetensors",
        heldout=corpus_heldout,
    output:
        heads="results/{scale}/induction_heads/phase/{model}/heads.csv",
        summary="results/{scale}/induction_heads/phase/{model}/summary.csv",
        metrics="results/{scale}/induction_heads/phase/{model}/summary.json",
    params:
        section=IH,
        models_dir=models_dir,
        model="{model}",
    threads: 1
    log:
        "results/{scale}/logs/induction_heads_phase_{model}.log",
    benchmark:
        "results/{scale}/benchmarks/induction_heads_phase_{model}.tsv"
    resources:
        mem_mb=3000,
        runtime=20,
        gpu=0,
    conda:
        ENV
    script:
        "../scripts/induction_heads/phase.py"


rule induction_heads_analysis:
    input:
        models=model_inputs([IH["main_model"]]),
        probes="results/{scale}/induction_heads/probes.safetensors",
    output:
        scores="results/{scale}/induction_heads/analysis/scores.csv",
        loss="results/{scale}/induction_heads/analysis/per_position_loss.csv",
        ablation="results/{scale}/induction_heads/analysis/ablation.csv",
        composition="results/{scale}/induction_heads/analysis/composition.csv",
        patterns="results/{scale}/induction_heads/analysis/patterns.safetensors",
        summary="results/{scale}/induction_heads/analysis/summary.json",
    params:
        section=IH,
        models_dir=models_dir,
    threads: 2
    log:
        "results/{scale}/logs/induction_heads_analysis.log",
    benchmark:
        "results/{scale}/benchmarks/induction_heads_analysis.tsv"
    resources:
        mem_mb=8000,
        runtime=30,
        gpu=GPU,
    conda:
        ENV
    script:
        "../scripts/induction_heads/analysis.py"


rule induction_heads_figures:
    input:
        analysis="results/{scale}/induction_heads/analysis/summary.json",
        scores="results/{scale}/induction_heads/analysis/scores.csv",
        loss="results/{scale}/induction_heads/analysis/per_position_loss.csv",
        ablation="results/{scale}/induction_heads/analysis/ablation.csv",
        composition="results/{scale}/induction_heads/analysis/composition.csv",
        patterns="results/{scale}/induction_heads/analysis/patterns.safetensors",
        phase=expand("results/{{scale}}/induction_heads/phase/{model}/summary.csv", model=IH["phase_models"]),
    output:
        phase=report("results/{scale}/induction_heads/figures/phase_change.png", category="induction_heads"),
        scores=report("results/{scale}/induction_heads/figures/head_scores.png", category="induction_heads"),
        patterns=report("results/{scale}/induction_heads/figures/attention_patterns.png", category="induction_heads"),
        loss=report("results/{scale}/induction_heads/figures/per_token_loss.png", category="induction_heads"),
        ablation=report("results/{scale}/induction_heads/figures/ablation.png", category="induction_heads"),
        composition=report("results/{scale}/induction_heads/figures/k_composition.png", category="induction_heads"),
    params:
        phase_models=IH["phase_models"],
        icl=[IH["icl_early"], IH["icl_late"]],
        threshold=IH["head_threshold"],
    log:
        "results/{scale}/logs/induction_heads_figures.log",
    conda:
        ENV
    script:
        "../scripts/induction_heads/figures.py"
