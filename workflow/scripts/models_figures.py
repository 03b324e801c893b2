"""Training curves and capability bars of the model-card report (rule `models_figures`)."""

from pathlib import Path

import pandas as pd

from mechrepro.io import log_to
from mechrepro.models.cards import card_rows
from mechrepro.models.registry import get_spec
from mechrepro.plots.models import capability_bars, training_curves

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
p, out = snakemake.params, snakemake.output

with log_to(snakemake.log[0]):
    toy = [m for m in p.models if get_spec(m).kind == "toy"]
    training_curves({m: pd.read_csv(Path(p.models_dir) / m / "train_log.csv") for m in toy}, out.curves)
    capability_bars(card_rows(p.models, p.models_dir), out.capabilities, p.required)
