"""The paper scale's hub downloads: listed from the config, found in a local cache, and reported before any job
starts (with how to provide them) when the hub cannot be reached."""

import os
import subprocess
import sys
from pathlib import Path

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


def test_paper_requirements_and_none_offline():
    repos = {(r.repo_type, r.repo_id) for r in hub.requirements(paper())}
    assert {("model", "gpt2"), ("model", "NeelNanda/GELU_1L512W_C4_Code"),
            ("model", "jbloom/GPT2-Small-SAEs-Reformatted"), ("dataset", "NeelNanda/c4-code-tokenized-2b")} <= repos
    assert hub.requirements(paper(smoke=True)) == []
    ci = yaml.safe_load((ROOT / "workflow/config/ci.yaml").read_text())
    assert hub.requirements(resolve({**ci, "scale": "ci"})) == []


def test_a_cached_snapshot_counts_and_an_empty_one_does_not(tmp_path):
    gpt2 = hub.HubRepo("gpt2", "model", "ioi.model")
    snap = tmp_path / "models--gpt2/snapshots/abc123"
    snap.mkdir(parents=True)
    assert not hub.is_cached(gpt2, tmp_path)
    (snap / "config.json").write_text("{}")
    assert hub.is_cached(gpt2, tmp_path)
    assert not hub.is_cached(hub.HubRepo("gpt2", "dataset", "x"), tmp_path)
    cfg = paper()
    left = hub.missing(cfg, cache=tmp_path, reachable=False)
    assert "gpt2" not in {r.repo_id for r in left} and len(left) == len(hub.requirements(cfg)) - 1
    assert hub.missing(cfg, cache=tmp_path, reachable=True) == []  # it will be downloaded


def test_offline_paper_run_says_what_is_missing_before_any_job(tmp_path):
    copy_workflow(tmp_path)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    run = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--config", "scale=paper"], cwd=tmp_path,
                         capture_output=True, text=True, env=env, timeout=600)
    out = run.stdout + run.stderr
    assert run.returncode != 0, out[-2000:]
    for needed in ("model gpt2", "NeelNanda/GELU_1L512W_C4_Code", "dataset NeelNanda/c4-code-tokenized-2b",
                   "HF_HUB_OFFLINE forbids", "hf download", "HF_HOME", "smoke=true"):
        assert needed in out, (needed, out[-3000:])
    assert "Traceback" not in out and not (tmp_path / "results").exists()
