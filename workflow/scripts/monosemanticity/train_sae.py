"""Train one SAE on the monosemanticity model's MLP neurons with SAELens (rule `monosemanticity_sae`)."""

from pathlib import Path

from mechrepro.io import log_to, set_threads
from mechrepro.models.load import best_device, load_model
from mechrepro.sae.data import training_tokens
from mechrepro.sae.train import DictionaryConfig, mlp_activations, save_sae, train_sae

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
out, params = snakemake.output, snakemake.params

with log_to(snakemake.log[0]):
    set_threads(snakemake.threads)
    section, expansion = params.section, int(params.expansion)
    size = next(d for d in section["dictionaries"] if d["expansion"] == expansion)
    cfg = DictionaryConfig(expansion=expansion, l1_coefficient=section["l1_coefficient"], n_samples=size["n_samples"],
                           batch_size=section["batch_size"], lr=section["lr"], seed=section["seed"])
    model = load_model(section["model"], models_dir=params.models_dir, device=best_device())
    tokens = training_tokens(section, snakemake.input.corpus, model.tokenizer, "train")
    acts = mlp_activations(model, tokens, section["hook"])
    print(f"{len(acts)} activations of {acts.shape[1]} neurons; training {cfg}", flush=True)
    save_sae(train_sae(acts, cfg), Path(out.cfg).parent)
