"""What a paper-scale run downloads from the Hugging Face hub, checked before any job starts.

The paper scale loads GPT-2 small and gelu-1l through TransformerLens, SAELens's pretrained ``gpt2-small-res-jb``
SAEs and the pre-tokenized dataset gelu-1l was trained on. With no hub access, each of those would fail deep inside
a library, one job at a time. :func:`missing` lists every repository the config needs that is neither in the local
Hugging Face cache nor reachable, and :func:`explain` says how to provide them.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse


@dataclass(frozen=True)
class HubRepo:
    repo_id: str
    repo_type: str  # "model" or "dataset"
    needed_for: str  # the config key that asks for it


def cache_dir() -> Path:
    """The Hugging Face hub cache, as ``huggingface_hub`` resolves it (HF_HUB_CACHE, HF_HOME, or ~/.cache)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def sae_release_repo(release: str) -> str:
    """The hub repository of a SAELens pretrained release, read from the ``pretrained_saes.yaml`` SAELens ships
    (without importing SAELens, which is slow)."""
    import importlib.util

    import yaml

    spec = importlib.util.find_spec("sae_lens")
    table = Path(spec.origin).parent / "pretrained_saes.yaml" if spec and spec.origin else None
    if table is None or not table.exists():
        raise FileNotFoundError("SAELens's pretrained_saes.yaml not found: is sae-lens installed?")
    entry = yaml.safe_load(table.read_text()).get(release)
    if entry is None:
        raise KeyError(f"SAELens lists no pretrained release {release!r}")
    return entry["repo_id"]


def requirements(cfg: dict) -> list[HubRepo]:
    """Every hub repository a resolved config needs (none at the toy and ci scales, nor in a smoke run)."""
    from mechrepro import replications
    from mechrepro.models.registry import REGISTRY

    models = {("capabilities.models", m) for m in cfg["capabilities"]["models"]}
    models |= {(key, m) for key, names in replications.model_keys(cfg).items() for m in names}
    mono = cfg["monosemanticity"]
    out: dict[str, HubRepo] = {}
    for key, name in sorted(models):
        for repo in getattr(REGISTRY[name], "hub_repos", ()):
            out.setdefault(repo, HubRepo(repo, "model", key))
    if "pretrained" in mono and REGISTRY[mono["pretrained"]["model"]].kind == "pretrained":
        repo = sae_release_repo(mono["pretrained"]["release"])
        out.setdefault(repo, HubRepo(repo, "model", "monosemanticity.pretrained.release"))
    for key, source in (("monosemanticity.dataset", mono["dataset"]),
                        ("monosemanticity.pretrained.dataset", mono.get("pretrained", {}).get("dataset", ""))):
        if source.startswith("hf:"):
            out.setdefault(source[3:], HubRepo(source[3:], "dataset", key))
    return list(out.values())


def is_cached(repo: HubRepo, cache: Path | None = None) -> bool:
    """Whether a snapshot of ``repo`` is in the local cache (a folder ``snapshots/<revision>/`` with files)."""
    folder = (cache or cache_dir()) / f"{repo.repo_type}s--{repo.repo_id.replace('/', '--')}" / "snapshots"
    return folder.is_dir() and any(any(rev.iterdir()) for rev in folder.iterdir() if rev.is_dir())


def hub_reachable(timeout: float = 3.0) -> bool:
    """False when HF_HUB_OFFLINE is set, or when the hub's host cannot be reached within ``timeout`` seconds."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def missing(cfg: dict, *, cache: Path | None = None, reachable: bool | None = None) -> list[HubRepo]:
    """The repositories ``cfg`` needs that are not cached, if the hub cannot be reached (else none)."""
    need = [r for r in requirements(cfg) if not is_cached(r, cache)]
    if not need:
        return []
    return need if not (hub_reachable() if reachable is None else reachable) else []


def explain(repos: list[HubRepo], cache: Path | None = None) -> str:
    """What is missing and how to provide it, for a user with no hub access."""
    cache = cache or cache_dir()
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    lines = [f"The paper scale needs {len(repos)} Hugging Face hub repositor{'y' if len(repos) == 1 else 'ies'} "
             f"that {'HF_HUB_OFFLINE forbids downloading' if offline else 'cannot be downloaded (the hub is not reachable)'}"
             f" and that are not in the local cache ({cache}):"]
    lines += [f"  - {r.repo_type} {r.repo_id}   (for config key '{r.needed_for}')" for r in repos]
    lines += ["To provide them: on a machine with hub access, fill a cache with",
              *(f"    hf download {'--repo-type dataset ' if r.repo_type == 'dataset' else ''}{r.repo_id}"
                for r in repos),
              "then copy that cache here and point HF_HOME at it (its hub/ folder holds models--* and datasets--*),",
              "and set HF_HUB_OFFLINE=1. Or run the offline smoke path with random weights: --config scale=paper "
              "smoke=true."]
    return "\n".join(lines)
