"""The paper scale's hub downloads: listed from the config, found in a local cache, and reported before any job
starts (with how to provide them) when the hub cannot be reached."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import copy_workflow
from mechrepro import hub
from mechrepro.config import resolve
from mechrepro.models.registry import REGISTRY

ROOT = Path(__file__).resolve().parents[1]


def paper(smoke=False) -> dict:
    cfg = yaml.safe_load((ROOT / "workflow/config/paper.yaml").read_text())
    cfg.update(scale="paper", smoke=smoke)
    return resolve(cfg)


def test_registry_repos_are_transformer_lens_own_names():
    from transformer_lens.loading_from_pretrained import get_official_model_name

    for spec in REGISTRY.values():
        if spec.kind == "pretrained":
            assert spec.hub_repos[0] == get_official_model_name(spec.tl_name), spec.name


def test_paper_requirements_also_in_the_smoke_run_and_none_at_ci():
    repos = {(r.repo_type, r.repo_id) for r in hub.requirements(paper())}
    assert {("model", "gpt2"), ("model", "NeelNanda/GELU_1L512W_C4_Code"),
            ("model", "jbloom/GPT2-Small-SAEs-Reformatted"), ("dataset", "NeelNanda/c4-code-tokenized-2b")} <= repos
    # the smoke run reads the same repositories, from its fabricated cache
    assert {(r.repo_type, r.repo_id) for r in hub.requirements(paper(smoke=True))} == repos
    ci = yaml.safe_load((ROOT / "workflow/config/ci.yaml").read_text())
    assert hub.requirements(resolve({**ci, "scale": "ci"})) == []


def _snapshot(cache: Path, folder: str, files: list[str], revision: str = "abc123") -> Path:
    snap = cache / folder / "snapshots" / revision
    for f in files:
        (snap / f).parent.mkdir(parents=True, exist_ok=True)
        (snap / f).write_text("{}")
    (cache / folder / "refs").mkdir(parents=True, exist_ok=True)
    (cache / folder / "refs" / "main").write_text(revision)
    return snap


def test_a_cached_repository_counts_only_with_every_file_its_loader_reads(tmp_path):
    gpt2 = next(r for r in hub.requirements(paper()) if r.repo_id == "gpt2")
    assert "model.safetensors" in gpt2.files and "vocab.json" in gpt2.files
    assert not hub.is_cached(gpt2, tmp_path)
    snap = _snapshot(tmp_path, "models--gpt2", list(gpt2.files))
    assert hub.is_cached(gpt2, tmp_path) and hub.missing_files(gpt2, tmp_path) == []
    (snap / "model.safetensors").unlink()  # a snapshot with a config and no weights is not a cached model
    assert hub.missing_files(gpt2, tmp_path) == ["model.safetensors"] and not hub.is_cached(gpt2, tmp_path)
    # a dataset counts with its parquet shards (what the job reads), not with any file
    data = hub.HubRepo("NeelNanda/c4-code-tokenized-2b", "dataset", "monosemanticity.dataset")
    _snapshot(tmp_path, "datasets--NeelNanda--c4-code-tokenized-2b", ["README.md"])
    assert hub.missing_files(data, tmp_path) == ["data/*.parquet"]
    _snapshot(tmp_path, "datasets--NeelNanda--c4-code-tokenized-2b", ["data/train-00000-of-00001.parquet"])
    assert hub.is_cached(data, tmp_path)
    cfg = paper()
    left = hub.missing(cfg, cache=tmp_path, reachable=False)
    assert {r.repo_id for r in left} == {r.repo_id for r in hub.requirements(cfg)} - {"NeelNanda/c4-code-tokenized-2b"}
    assert hub.missing(cfg, cache=tmp_path, reachable=True) == []  # it will be downloaded


def test_the_preflight_names_the_missing_file_and_the_command_that_fetches_it(tmp_path):
    cfg = paper()
    for r in hub.requirements(cfg):  # a complete cache ...
        _snapshot(tmp_path, f"{r.repo_type}s--{r.repo_id.replace('/', '--')}",
                  list(r.files) or ["data/train-00000-of-00001.parquet"])
    assert hub.missing(cfg, cache=tmp_path, reachable=False) == []
    sae = next(r for r in hub.requirements(cfg) if r.repo_id == "jbloom/GPT2-Small-SAEs-Reformatted")
    gone = "blocks.8.hook_resid_pre/sae_weights.safetensors"
    assert gone in sae.files
    next((tmp_path / "models--jbloom--GPT2-Small-SAEs-Reformatted").glob(f"snapshots/*/{gone}")).unlink()  # ... less one
    left = hub.missing(cfg, cache=tmp_path, reachable=False)
    assert left == [sae]
    text = hub.explain(left, tmp_path, reason="HF_HUB_OFFLINE forbids downloading")
    assert f"model jbloom/GPT2-Small-SAEs-Reformatted   (for config key 'monosemanticity.pretrained.release'): missing {gone}" in text
    assert f"hf download jbloom/GPT2-Small-SAEs-Reformatted {gone}" in text and "HF_HUB_OFFLINE forbids" in text


def test_an_unreachable_hub_says_what_failed(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    reason = hub.unreachable_reason(timeout=1)
    assert reason.startswith("the hub cannot be reached (connecting to 127.0.0.1:9 failed: ") and "Error" in reason
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.unreachable_reason() == "HF_HUB_OFFLINE forbids downloading"


@pytest.mark.parametrize("offline", [True, False])
def test_offline_paper_run_says_what_is_missing_before_any_job(tmp_path, offline):
    """HF_HUB_OFFLINE=1, or unset with no hub to reach: either way one message before any job, naming each
    repository, why it cannot be downloaded and the command that fetches it."""
    copy_workflow(tmp_path)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    if not offline:
        env.pop("HF_HUB_OFFLINE")
        env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # nothing listens: as on a machine without network
    run = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--config", "scale=paper"], cwd=tmp_path,
                         capture_output=True, text=True, env=env, timeout=600)
    out = run.stdout + run.stderr
    assert run.returncode != 0, out[-2000:]
    why = "HF_HUB_OFFLINE forbids" if offline else "connecting to 127.0.0.1:9 failed"
    for needed in ("model gpt2", "NeelNanda/GELU_1L512W_C4_Code", "dataset NeelNanda/c4-code-tokenized-2b", why,
                   "hf download gpt2 config.json", "hf download --repo-type dataset NeelNanda/c4-code-tokenized-2b",
                   "HF_HOME", "smoke=true"):
        assert needed in out, (needed, out[-3000:])
    assert "Traceback" not in out and not (tmp_path / "results").exists()
