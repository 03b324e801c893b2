"""Build one ground-truth model: compile (tracr), set by hand, or train with IIT (rule `circuit_discovery_truth`).
An IIT run below its target accuracy fails here, so nothing downstream treats it as ground truth."""

from pathlib import Path

from mechrepro.io import log_to, set_threads
from mechrepro.tasks.circuit_discovery import build_truth

snakemake = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(snakemake.log[0]):
    set_threads(snakemake.threads)
    gt = build_truth(snakemake.params.truth, snakemake.params.section)
    gt.save(Path(snakemake.output.card).parent)
    print(gt.card)
