"""Toy models of superposition (rule `monosemanticity_superposition`)."""

from mechrepro.io import log_to, save_tensors, set_threads, write_json
from mechrepro.sae.superposition import SuperpositionConfig, run_superposition, tensors_for_saving

snakemake = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(snakemake.log[0]):
    set_threads(snakemake.threads)
    r = run_superposition(SuperpositionConfig.from_config(dict(snakemake.params.section)))
    save_tensors(snakemake.output.tensors, tensors_for_saving(r))
    write_json(snakemake.output.summary, r["summary"])
    print(r["summary"])
