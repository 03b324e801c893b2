"""Execute a replication's notebook with papermill and render it to offline HTML (rule `report`)."""

import glob
from pathlib import Path

from mechrepro import provenance
from mechrepro.io import log_to, read_json, write_json
from mechrepro.report import render

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
inp, out, p = snakemake.input, snakemake.output, snakemake.params

with log_to(snakemake.log[0]):
    cfg = p.config
    prov = provenance.collect(repo=p.repo, scale=cfg["scale"], config=cfg, cfg_hash=p.config_hash,
                              models=p.models, seeds=p.seeds, benchmarks=sorted({f for pat in p.benchmarks for f in glob.glob(pat)}))
    write_json(out.provenance, prov)
    render(inp.notebook, out.html, template_dir=p.template, executed_out=out.notebook, cwd=Path.cwd(),
           parameters={"results_dir": str(Path(p.results_dir).resolve()),
                       "provenance_path": str(Path(out.provenance).resolve()),
                       "claims_path": str(Path(inp.claims).resolve())})
    print(f"report: {out.html}; claims {read_json(inp.claims)['summary']}")
