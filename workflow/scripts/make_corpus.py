"""Generate the seeded synthetic corpus and the toy tokenizer (rule `corpus`)."""

from mechrepro.data.corpus import FAMILIES, CorpusConfig, generate
from mechrepro.data.tokenizer import build_tokenizer, save_tokenizer
from mechrepro.io import log_to, save_tensors, write_json

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
out, p = snakemake.output, snakemake.params.corpus

with log_to(snakemake.log[0]):
    tokenizer = build_tokenizer()
    train = generate(CorpusConfig(n_docs=p["n_docs"], n_ctx=p["n_ctx"], seed=p["seed"]))
    # Held-out documents come from a different seed: never seen in training.
    heldout = generate(CorpusConfig(n_docs=p["n_heldout"], n_ctx=p["n_ctx"], seed=p["seed"] + 10_000))
    save_tensors(out.train, train)
    save_tensors(out.heldout, heldout)
    save_tokenizer(tokenizer, out.tokenizer)
    write_json(out.meta, {"families": list(FAMILIES), "d_vocab": len(tokenizer), "n_docs": p["n_docs"],
                          "n_heldout": p["n_heldout"], "n_ctx": p["n_ctx"], "seed": p["seed"],
                          "train_tokens": int(train["tokens"].numel()),
                          "repeat_fraction": float(train["is_repeat"].float().mean())})
    print(f"corpus: {p['n_docs']} documents x {p['n_ctx']} tokens, vocabulary {len(tokenizer)}")
