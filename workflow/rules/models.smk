# The corpus and the toy models trained from it.


rule corpus:
    output:
        train="results/{scale}/corpus/train.safetensors",
        heldout="results/{scale}/corpus/heldout.safetensors",
        tokenizer="results/{scale}/corpus/tokenizer.json",
        meta="results/{scale}/corpus/meta.json",
    params:
        corpus=CFG["corpus"],
    log:
        "results/{scale}/logs/corpus.log",
    benchmark:
        "results/{scale}/benchmarks/corpus.tsv"
    resources:
        mem_mb=2000,
        runtime=15,
    conda:
        ENV
    script:
        "../scripts/make_corpus.py"


rule train_toy_model:
    input:
        train="results/{scale}/corpus/train.safetensors",
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
