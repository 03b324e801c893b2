"""Generate one named corpus of the scale config (rule `corpus`)."""

from mechrepro.data.corpus import corpus_meta, generate_split
from mechrepro.data.tokenizer import load_tokenizer
from mechrepro.io import log_to, save_tensors, write_json

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
out, spec = snakemake.output, snakemake.params.spec

with log_to(snakemake.log[0]):
    tokenizer = load_tokenizer(snakemake.input.tokenizer)
    train = generate_split(spec, "train")
    heldout = generate_split(spec, "heldout")
    save_tensors(out.train, train)
    save_tensors(out.heldout, heldout)
    write_json(out.meta, corpus_meta(spec, train, len(tokenizer)))
    print(f"corpus {snakemake.wildcards.corpus}: {spec['n_docs']} documents x {spec['n_ctx']} tokens, "
          f"vocabulary {len(tokenizer)}")
