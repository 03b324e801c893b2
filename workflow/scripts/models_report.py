"""Execute the model-card notebook and render it to offline HTML (rule `models_report`)."""

from pathlib import Path

from mechrepro.io import log_to
from mechrepro.report import render_with_provenance

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
inp, out, p = snakemake.input, snakemake.output, snakemake.params

with log_to(snakemake.log[0]):
    render_with_provenance(p, inp.notebook, out, {"models_dir": str(Path(p.models_dir).resolve()),
                                                  "models": list(p.models),
                                                  "figures_dir": str(Path(inp.figures[0]).parent.resolve())})
    print(f"model cards: {out.html}")
