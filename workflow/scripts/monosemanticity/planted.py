"""An SAE trained with SAELens on activations from planted features (rule `monosemanticity_planted`)."""

import pandas as pd

from mechrepro.io import log_to, set_threads, write_csv, write_json
from mechrepro.sae.planted import PlantedConfig, run_planted

snakemake = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(snakemake.log[0]):
    set_threads(snakemake.threads)
    r = run_planted(PlantedConfig(**snakemake.params.section))
    write_csv(snakemake.output.best_cosine, pd.DataFrame({"feature": range(len(r["best_cosine"])),
                                                          "best_cosine": r["best_cosine"].tolist()}))
    write_json(snakemake.output.summary, r["summary"])
    print(r["summary"])
