# The tokenizer, the corpora, the toy models trained from them, and their capability checks; the smoke run's
# fabricated hub cache.


rule tokenizer:
    output:
        tokenizer="results/{scale}/corpus/tokenizer.json",
    log:
        "results/{scale}/logs/tokenizer.log",
    conda:
        ENV
    script:
        "../scripts/make_tokenizer.py"


rule fabricate_hub_cache:
    output:
        manifest="results/{scale}/hf/fabricated.json",
    params:
        config=CFG,
    log:
        "results/{scale}/logs/fabricate_hub_cache.log",
    benchmark:
        "results/{scale}/benchmarks/fabricate_hub_cache.tsv"
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    script:
        "../scripts/fabricate_hub_cache.py"


rule corpus:
    input:
        tokenizer="results/{scale}/corpus/tokenizer.json",
    output:
        train="results/{scale}/corpus/{corpus}/train.safetensors",
        heldout="results/{scale}/corpus/{corpus}/heldout.safetensors",
        meta="results/{scale}/corpus/{corpus}/meta.json",
    params:
        spec=corpus_spec,
    log:
        "results/{scale}/logs/corpus_{corpus}.log",
    benchmark:
        "results/{scale}/benchmarks/corpus_{corpus}.tsv"
    resources:
        mem_mb=3000,
        runtime=15,
    conda:
        ENV
    script:
        "../scripts/make_corpus.py"


rule train_toy_model:
    input:
        train=corpus_train,
        tokenizer="results/{scale}/corpus/tokenizer.json",
    output:
        weights="results/{scale}/models/{model}/model.safetensors",
        card="results/{scale}/models/{model}/model.json",
        checkpoints="results/{scale}/models/{model}/checkpoints.json",
        train_log="results/{scale}/models/{model}/train_log.csv",
        tokenizer="results/{scale}/models/{model}/tokenizer.json",
    params:
        model="{model}",
        recipe=toy_recipe,
    # Small models: one thread each, so that two train side by side on two cores.
    threads: 1
    log:
        "results/{scale}/logs/train_{model}.log",
    benchmark:
        "results/{scale}/benchmarks/train_{model}.tsv"
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=0,
    conda:
        ENV
    script:
        "../scripts/train_toy_model.py"


rule capabilities:
    input:
        models=model_files,
        heldout=corpus_heldout,
    output:
        capabilities="results/{scale}/models/{model}/capabilities.json",
    params:
        model="{model}",
        section=CFG["capabilities"],
        models_dir=models_dir,
    threads: 1
    log:
        "results/{scale}/logs/capabilities_{model}.log",
    resources:
        mem_mb=4000,
        runtime=20,
        gpu=GPU,
    conda:
        ENV
    script:
        "../scripts/capabilities.py"


rule models_figures:
    input:
        capabilities=expand("results/{{scale}}/models/{model}/capabilities.json", model=CAPABILITY_MODELS),
        cards=model_inputs(CAPABILITY_MODELS),
    output:
        curves=report("results/{scale}/models/figures/training_curves.png", category="models"),
        capabilities=report("results/{scale}/models/figures/capabilities.png", category="models"),
    params:
        models=CAPABILITY_MODELS,
        models_dir=models_dir,
        required=CFG["capabilities"]["required"],
    log:
        "results/{scale}/logs/models_figures.log",
    conda:
        ENV
    script:
        "../scripts/models_figures.py"


rule models_report:
    input:
        notebook="workflow/notebooks/models.ipynb",
        figures=rules.models_figures.output,
    output:
        html="reports/{scale}/{version}/models.html",
        notebook="reports/{scale}/{version}/models.ipynb",
        provenance="reports/{scale}/{version}/models.provenance.json",
    params:
        repo=workflow.basedir,
        config=CFG,
        config_hash=CONFIG_HASH,
        models=CAPABILITY_MODELS,
        seeds=model_seeds(CAPABILITY_MODELS),
        benchmarks=[f"results/{SCALE}/benchmarks/train_*.tsv", f"results/{SCALE}/benchmarks/corpus_*.tsv"],
        models_dir=models_dir,
        template="workflow/templates/offline",
    log:
        "results/{scale}/logs/models_report_{version}.log",
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    script:
        "../scripts/models_report.py"
