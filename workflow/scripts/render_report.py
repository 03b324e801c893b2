"""Execute a replication's notebook with papermill and render it to offline HTML (rule `report`)."""

from pathlib import Path

from mechrepro.io import log_to, read_json
from mechrepro.report import render_with_provenance

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
inp, out, p = snakemake.input, snakemake.output, snakemake.params

with log_to(snakemake.log[0]):
    render_with_provenance(p, inp.notebook, out, {"results_dir": str(Path(p.results_dir).resolve()),
                                                  "claims_path": str(Path(inp.claims).resolve())})
    print(f"report: {out.html}; claims {read_json(inp.claims)['summary']}")
