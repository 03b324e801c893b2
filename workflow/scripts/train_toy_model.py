"""Train one toy model from the corpus (rule `train_toy_model`); resumes a killed run."""

import shutil

from mechrepro.data.tokenizer import load_tokenizer
from mechrepro.io import load_tensors, log_to, set_threads
from mechrepro.models.registry import get_spec
from mechrepro.models.train import train

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
inp, out = snakemake.input, snakemake.output

with log_to(snakemake.log[0]):
    set_threads(snakemake.threads)
    recipe = get_spec(snakemake.params.model)
    tokenizer = load_tokenizer(inp.tokenizer)
    tokens = load_tensors(inp.train)["tokens"]
    shutil.copyfile(inp.tokenizer, out.tokenizer)  # the model folder is self-contained
    result = train(recipe, tokens, len(tokenizer), out_dir=str(out.card).rsplit("/", 1)[0])
    print(f"{recipe.name}: {result.tokens_seen} tokens, final loss {result.final_loss:.4f}, "
          f"resumed from step {result.resumed_from_step}")
