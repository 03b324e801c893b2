"""Fabricate the offline hub cache the smoke run reads (rule `fabricate_hub_cache`): the paper scale's repositories
with random weights, in the layout huggingface_hub reads, then checked like a user's cache (mechrepro.fabricate)."""

from pathlib import Path

from mechrepro.fabricate import fabricate_for
from mechrepro.io import log_to, write_json

snakemake = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(snakemake.log[0]):
    made = fabricate_for(snakemake.params.config, Path(snakemake.output.manifest).parent)
    for repo, r in made["repos"].items():
        print(f"{r['type']} {repo}: revision {r['revision']}, {len(r['files'])} files"
              f"{'' if r['written'] else ' (already there)'}")
    # the manifest names what was written, not where: the same bytes wherever the workflow runs
    write_json(snakemake.output.manifest, {"settings": made["settings"], "checked": made["checked"],
                                           "repos": {k: {"type": v["type"], "revision": v["revision"],
                                                         "files": v["files"]} for k, v in made["repos"].items()}})
