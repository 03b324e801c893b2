"""Score every discovery method against one ground truth, under its own ablation and a mismatched one, and run
the IOI recipe where heads were planted by class (rule `circuit_discovery_score`)."""

from pathlib import Path

from mechrepro.groundtruth import GroundTruth
from mechrepro.io import log_to, set_threads
from mechrepro.tasks.circuit_discovery import ScoringConfig, recipe, score, truth_pairs

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
section = snakemake.params.section

with log_to(snakemake.log[0]):
    set_threads(snakemake.threads)
    gt = GroundTruth.load(Path(snakemake.input.card).parent)
    cfg = ScoringConfig(methods=section["methods"], ig_steps=section["ig_steps"], n_random=section["n_random"],
                        seed=section["seed"])
    scored = score(gt, truth_pairs(gt, section), cfg)
    if gt.name == "planted_ioi":
        scored.summary.update(recipe(gt, section))
    scored.summary["card"] = gt.card
    scored.save(snakemake.output)
    print({k: v for k, v in scored.summary.items() if k != "card"})
