"""Write this version's manifest and the scale's index of all report versions (rule `report_index`)."""

from pathlib import Path

from mechrepro.io import log_to, read_json
from mechrepro.models.cards import checks_summary
from mechrepro.report import build_index, write_manifest

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
inp, out, p = snakemake.input, snakemake.output, snakemake.params

with log_to(snakemake.log[0]):
    claims = {read_json(c)["slug"]: read_json(c) for c in inp.claims}
    claims["models"] = {"summary": checks_summary(p.models, p.models_dir)}  # the model cards' required checks
    write_manifest(out.manifest, p.version, p.scale, claims, read_json(inp.provenance[0]))
    build_index(Path(out.index).parent, out.index)
