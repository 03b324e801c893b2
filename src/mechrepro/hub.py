"""What a paper-scale run downloads from the Hugging Face hub, checked before any job starts.

The paper scale loads GPT-2 small and gelu-1l through TransformerLens, SAELens's pretrained ``gpt2-small-res-jb``
SAEs and the pre-tokenized dataset gelu-1l was trained on. With no hub access, each of those would fail deep inside
a library, one job at a time. :func:`missing` lists every repository the config needs whose files (those its loader
reads: :data:`MODEL_FILES`, the SAEs' folders, a dataset's parquet shards) are not all in the local Hugging Face
cache, when the hub cannot be reached; :func:`explain` names each missing file, why nothing can be downloaded, and
the ``hf download`` command that fetches it. The smoke run checks its fabricated cache (:mod:`mechrepro.fabricate`)
the same way.
"""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

# The files each loader reads from a model repository: what the preflight checks, and what `hf download` fetches.
# gpt2: transformers' GPT2LMHeadModel and GPT2Tokenizer under TransformerLens's from_pretrained; gelu-1l: TransformerLens's
# own config and final checkpoint, and its tokenizer's repository; SAE releases: per SAE (sae_files).
MODEL_FILES = {
    "gpt2": ("config.json", "generation_config.json", "model.safetensors", "tokenizer_config.json", "vocab.json",
             "merges.txt"),
    "NeelNanda/GELU_1L512W_C4_Code": ("config.json", "model_final.pth"),
    "NeelNanda/gpt-neox-tokenizer-digits": ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"),
}
SAE_FILES = ("cfg.json", "sae_weights.safetensors", "sparsity.safetensors")  # SAELens's layout, per SAE folder
# A pre-tokenized dataset is read from its snapshot's parquet shards (mechrepro.sae.data.hub_tokens): datasets'
# load_dataset(name) offline reads only its own prepared cache, never a hub snapshot.
DATASET_FILES = "data/*.parquet"


@dataclass(frozen=True)
class HubRepo:
    repo_id: str
    repo_type: str  # "model" or "dataset"
    needed_for: str  # the config key that asks for it
    files: tuple[str, ...] = ()  # the files its loader reads (a model); a dataset: at least one DATASET_FILES

    def download_command(self, missing: tuple[str, ...] | list[str] = ()) -> str:
        """The `hf download` command that fetches what the loader reads (``missing``: only those files)."""
        if self.repo_type == "dataset":
            return f"hf download --repo-type dataset {self.repo_id} --include '{DATASET_FILES}'"
        return " ".join(["hf download", self.repo_id, *(missing or self.files)])


def cache_dir() -> Path:
    """The Hugging Face hub cache, as ``huggingface_hub`` resolves it (HF_HUB_CACHE, HF_HOME, or ~/.cache)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


@functools.cache
def _sae_table() -> dict:
    """SAELens's ``pretrained_saes.yaml`` (read once, without importing SAELens, which is slow; the file is large,
    so with libyaml's loader where PyYAML has it)."""
    import importlib.util

    import yaml

    spec = importlib.util.find_spec("sae_lens")
    table = Path(spec.origin).parent / "pretrained_saes.yaml" if spec and spec.origin else None
    if table is None or not table.exists():
        raise FileNotFoundError("SAELens's pretrained_saes.yaml not found: is sae-lens installed?")
    return yaml.load(table.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _sae_release(release: str) -> dict:
    """A SAELens pretrained release's entry in its release table."""
    entry = _sae_table().get(release)
    if entry is None:
        raise KeyError(f"SAELens lists no pretrained release {release!r}")
    return entry


def sae_release_repo(release: str) -> str:
    """The hub repository of a SAELens pretrained release."""
    return _sae_release(release)["repo_id"]


def sae_files(release: str, sae_ids: list[str]) -> tuple[str, ...]:
    """The files SAELens reads for these SAEs of ``release`` (each SAE's folder, as the release table names it)."""
    paths = {s["id"]: s["path"] for s in _sae_release(release)["saes"]}
    unknown = [i for i in sae_ids if i not in paths]
    if unknown:
        raise KeyError(f"SAELens's release {release!r} has no SAE {unknown[0]!r}")
    return tuple(f"{paths[i]}/{f}" for i in sae_ids for f in SAE_FILES)


def requirements(cfg: dict) -> list[HubRepo]:
    """Every hub repository a resolved config needs, with the files its loader reads (none at the toy and ci scales;
    the smoke run needs the same ones, from its fabricated cache)."""
    from mechrepro import replications
    from mechrepro.models.registry import REGISTRY

    models = {("capabilities.models", m) for m in cfg["capabilities"]["models"]}
    models |= {(key, m) for key, names in replications.model_keys(cfg).items() for m in names}
    mono = cfg["monosemanticity"]
    out: dict[str, HubRepo] = {}
    for key, name in sorted(models):
        for repo in getattr(REGISTRY[name], "hub_repos", ()):
            out.setdefault(repo, HubRepo(repo, "model", key, MODEL_FILES.get(repo, ("config.json",))))
    if "pretrained" in mono and REGISTRY[mono["pretrained"]["model"]].kind == "pretrained":
        pre = mono["pretrained"]
        repo = sae_release_repo(pre["release"])
        files = sae_files(pre["release"], [f"blocks.{layer}.hook_resid_pre" for layer in pre["layers"]])
        out.setdefault(repo, HubRepo(repo, "model", "monosemanticity.pretrained.release", files))
    for key, source in (("monosemanticity.dataset", mono["dataset"]),
                        ("monosemanticity.pretrained.dataset", mono.get("pretrained", {}).get("dataset", ""))):
        if source.startswith("hf:"):
            out.setdefault(source[3:], HubRepo(source[3:], "dataset", key))
    return list(out.values())


def repo_folder(repo_id: str, repo_type: str = "model", cache: str | Path | None = None) -> Path:
    """A repository's folder in the hub cache: ``<cache>/models--org--name`` (``datasets--`` for a dataset)."""
    return Path(cache or cache_dir()) / f"{repo_type}s--{repo_id.replace('/', '--')}"


def snapshot(repo_id: str, repo_type: str = "model", cache: Path | None = None) -> Path | None:
    """The cached snapshot ``huggingface_hub`` would read offline: ``snapshots/<revision>`` with the revision
    ``refs/main`` names (else the only snapshot there is); None when there is none."""
    folder = repo_folder(repo_id, repo_type, cache)
    ref = folder / "refs" / "main"
    if ref.is_file():
        snap = folder / "snapshots" / ref.read_text().strip()
        return snap if snap.is_dir() else None
    snaps = [p for p in (folder / "snapshots").glob("*") if p.is_dir()]
    return snaps[0] if len(snaps) == 1 else None


def missing_files(repo: HubRepo, cache: Path | None = None) -> list[str]:
    """The files of ``repo`` its loader reads that the local cache lacks (all of them when it has no snapshot; a
    dataset: its parquet shards, as one pattern)."""
    snap = snapshot(repo.repo_id, repo.repo_type, cache)
    if repo.repo_type == "dataset":
        return [] if snap is not None and any(snap.glob(DATASET_FILES)) else [DATASET_FILES]
    wanted = repo.files or ("config.json",)
    return [f for f in wanted if snap is None or not (snap / f).is_file()]  # is_file follows the blob symlink


def is_cached(repo: HubRepo, cache: Path | None = None) -> bool:
    """Whether the local cache holds every file of ``repo`` that its loader reads."""
    return not missing_files(repo, cache)


def is_fabricated(repo_id: str, repo_type: str = "model", cache: Path | None = None) -> bool:
    """Whether the cached snapshot of ``repo_id`` was fabricated (``mechrepro.fabricate``: random weights)."""
    from mechrepro.fabricate import is_fabricated as marked

    snap = snapshot(repo_id, repo_type, cache)
    return snap is not None and marked(snap)


def use_cache(root: str | Path) -> Path:
    """Point this process and its children at the Hugging Face cache under ``root`` (``HF_HOME``), offline
    (``HF_HUB_OFFLINE=1``; an ``HF_HUB_CACHE`` that would win over ``HF_HOME`` is dropped). huggingface_hub reads both
    when it is first imported: call this before any job process starts."""
    root = Path(root).resolve()
    os.environ["HF_HOME"] = str(root)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.pop("HF_HUB_CACHE", None)
    return root


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def unreachable_reason(timeout: float = 3.0) -> str | None:
    """Why the hub cannot be downloaded from (HF_HUB_OFFLINE set, or the connection's error), or None if it can."""
    if offline():
        return "HF_HUB_OFFLINE forbids downloading"
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return None
    except OSError as err:
        return (f"the hub cannot be reached (connecting to {url.hostname}:{url.port or 443} failed: "
                f"{type(err).__name__}: {err})")


def hub_reachable(timeout: float = 3.0) -> bool:
    """False when HF_HUB_OFFLINE is set, or when the hub's host cannot be reached within ``timeout`` seconds."""
    return unreachable_reason(timeout) is None


def missing(cfg: dict, *, cache: Path | None = None, reachable: bool | None = None) -> list[HubRepo]:
    """The repositories ``cfg`` needs that are not cached in full, if the hub cannot be reached (else none)."""
    need = [r for r in requirements(cfg) if not is_cached(r, cache)]
    if not need:
        return []
    return need if not (hub_reachable() if reachable is None else reachable) else []


def explain(repos: list[HubRepo], cache: Path | None = None, reason: str | None = None) -> str:
    """What is missing (each file), why it cannot be downloaded, and the commands that fetch it."""
    cache = cache or cache_dir()
    reason = reason or unreachable_reason()
    lines = [f"The paper scale needs {len(repos)} Hugging Face hub repositor{'y' if len(repos) == 1 else 'ies'} "
             f"that {reason or 'cannot be downloaded'} and that the local cache ({cache}) does not hold in full:"]
    for r in repos:
        gone = missing_files(r, cache)
        have = "not cached" if len(gone) == len(r.files or gone) else f"missing {', '.join(gone)}"
        lines.append(f"  - {r.repo_type} {r.repo_id}   (for config key '{r.needed_for}'): {have}")
    lines += ["To provide them: on a machine with hub access, fill a cache with",
              *(f"    {r.download_command(missing_files(r, cache) if r.repo_type == 'model' else ())}" for r in repos),
              "then copy that cache here and point HF_HOME at it (its hub/ folder holds models--* and datasets--*),",
              "and set HF_HUB_OFFLINE=1. Or rehearse the paper path offline on a fabricated cache with random weights: "
              "--config scale=paper smoke=true."]
    return "\n".join(lines)


def download_commands(cfg: dict) -> list[str]:
    """The `hf download` commands that fill a cache with every file a resolved config's loaders read."""
    return [r.download_command() for r in requirements(cfg)]


if __name__ == "__main__":  # python -m mechrepro.hub workflow/config/paper.yaml: what to download, where there is network
    import sys

    import yaml

    from mechrepro.config import resolve

    if len(sys.argv) != 2:
        sys.exit("usage: python -m mechrepro.hub <scale config, e.g. workflow/config/paper.yaml>")
    config = yaml.safe_load(Path(sys.argv[1]).read_text())
    config.setdefault("scale", Path(sys.argv[1]).stem)
    print("\n".join(download_commands(resolve({**config, "smoke": False}))) or "# nothing: this scale needs no hub")
