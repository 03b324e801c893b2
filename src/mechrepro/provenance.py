"""Provenance for every report: code version, config, packages, device, seeds, wall time.

A report version is ``<commit>[-dirty]-<config hash>``, so a new commit or a new config gets a
new report folder and earlier reports are never overwritten.
"""

from __future__ import annotations

import csv
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("mechrepro", "torch", "transformer-lens", "sae-lens", "snakemake", "papermill", "nbconvert",
            "numpy", "pandas", "matplotlib")


def git_state(repo: str | Path) -> tuple[str, bool]:
    """(short commit, dirty) of the git checkout at ``repo``; ("nogit", False) outside git.

    Generated folders (results/, reports/) are git-ignored, so running the pipeline does not
    make the tree dirty.
    """
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=10", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, check=True).stdout.strip()
        return commit, bool(status)
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "nogit", False


def report_version(repo: str | Path, cfg_hash: str) -> str:
    commit, dirty = git_state(repo)
    return f"{commit}{'-dirty' if dirty else ''}-{cfg_hash}"


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    out["python"] = platform.python_version()
    return out


def device_description() -> str:
    import torch  # here, not at the top: the workflow imports this module on every snakemake command

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"


def benchmark_seconds(paths: list[str | Path]) -> float:
    """Sum the wall-clock seconds in Snakemake benchmark TSVs (column ``s``)."""
    total = 0.0
    for p in paths:
        with open(p, newline="") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                total += float(row["s"])
    return total


def collect(*, repo: str | Path, scale: str, config: dict, cfg_hash: str, models: list[str],
            seeds: dict[str, int], benchmarks: list[str | Path]) -> dict:
    commit, dirty = git_state(repo)
    return {
        "commit": commit,
        "dirty": dirty,
        "version": report_version(repo, cfg_hash),
        "config_hash": cfg_hash,
        "scale": scale,
        "models": models,
        "packages": package_versions(),
        "device": device_description(),
        "seeds": seeds,
        "wall_time_s": round(benchmark_seconds(benchmarks), 1),
        "config": config,
    }
