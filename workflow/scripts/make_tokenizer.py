"""Build the toy tokenizer from the word lists (rule `tokenizer`)."""

from mechrepro.data.tokenizer import build_tokenizer, save_tokenizer
from mechrepro.io import log_to

snakemake = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(snakemake.log[0]):
    tokenizer = build_tokenizer()
    save_tokenizer(tokenizer, snakemake.output.tokenizer)
    print(f"tokenizer: {len(tokenizer)} tokens")
