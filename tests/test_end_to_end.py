"""End to end: the ci scale through Snakemake in a temporary directory (a few minutes on 2 cores)."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mechrepro.models.load import default_gpt2_tokenizer_dir

ROOT = Path(__file__).resolve().parents[1]


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, capture_output=True, text=True,
                          timeout=1800)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A copy of the workflow (not of results/ or reports/), as a user's fresh checkout would have."""
    d = tmp_path_factory.mktemp("e2e")
    shutil.copy(ROOT / "Snakefile", d)
    for sub in ("workflow", "replications"):
        shutil.copytree(ROOT / sub, d / sub)
    return d


@pytest.mark.e2e
def test_ci_scale_end_to_end(workdir):
    run = _snakemake(workdir, "--cores", "2", "--config", "scale=ci")
    assert run.returncode == 0, run.stderr[-4000:]
    reports = list((workdir / "reports/ci").glob("*/induction_heads.html"))
    assert len(reports) == 1
    page = reports[0].read_text()
    assert "Claims" in page and "<table" in page and "pass" in page
    assert "Provenance" in page and "config hash" in page
    # Self-contained: no script or stylesheet from the network, images embedded.
    ioi_page = (reports[0].parent / "ioi.html").read_text()
    assert "Indirect-object identification" in ioi_page and "faithfulness" in ioi_page
    assert "toy-lm-ci" in ioi_page and ioi_page.count("data:image/png;base64") >= 5
    ioi_claims = json.loads((workdir / "results/ci/ioi/claims.json").read_text())
    assert {c["id"]: c["status"] for c in ioi_claims["claims"]}["toy_circuit_is_faithful"] in ("pass", "fail")
    gt_page = (reports[0].parent / "greater_than.html").read_text()
    assert "Greater-Than" in gt_page and "probability difference" in gt_page
    assert "toy-lm-ci" in gt_page and gt_page.count("data:image/png;base64") >= 5
    gt_claims = {c["id"]: c["status"] for c in json.loads(
        (workdir / "results/ci/greater_than/claims.json").read_text())["claims"]}
    assert gt_claims["toy_circuit_is_faithful"] in ("pass", "fail") and gt_claims["probability_difference"] == "not run"
    mono_page = (reports[0].parent / "monosemanticity.html").read_text()
    assert "Towards Monosemanticity" in mono_page and "toy-1l-mlp-ci" in mono_page
    assert mono_page.count("data:image/png;base64") >= 9 and "sae-context" in mono_page  # figures, token contexts
    mono = {c["id"]: c["status"] for c in json.loads(
        (workdir / "results/ci/monosemanticity/claims.json").read_text())["claims"]}
    assert mono["toy_loss_recovered"] in ("pass", "fail") and mono["gpt2_res_jb_l0"] == "not run"
    for html in (page, ioi_page, gt_page, mono_page, (reports[0].parent / "models.html").read_text()):
        assert not re.search(r"<script[^>]+src=[\"']?https?:", html, re.I)
        assert not re.search(r"<link[^>]+href=[\"']?https?:", html, re.I)
        assert not re.search(r"url\(\s*[\"']?https?:|@import", html, re.I)
        assert "data:image/png;base64" in html and "Traceback" not in html and "Warning" not in html
    index = (workdir / "reports/ci/index.html").read_text()
    assert all(slug in index for slug in ("induction_heads", "ioi", "greater_than", "monosemanticity"))
    assert reports[0].parent.name in index
    assert (workdir / "results/ci/induction_heads/claims.json").exists()
    # Model cards: every ci model's capabilities, training curves, nothing required at ci
    cards = (reports[0].parent / "models.html").read_text()
    assert "Model cards" in cards and "toy-lm-ci" in cards and "toy-1l-mlp-ci" in cards
    assert "No capability is required at this scale" in cards and cards.count("data:image/png;base64") >= 2
    assert "models.html" in index
    caps = json.loads((workdir / "results/ci/models/toy-lm-ci/capabilities.json").read_text())
    assert {"ioi_accuracy", "ioi_logit_diff", "gt_prob_diff", "heldout_loss"} <= set(caps["metrics"])
    assert caps["checks"] == []

    dry = _snakemake(workdir, "-n", "--cores", "2", "--config", "scale=ci")
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "Nothing to be done" in dry.stdout + dry.stderr


@pytest.mark.e2e
@pytest.mark.skipif(not default_gpt2_tokenizer_dir().joinpath("vocab.json").exists(),
                    reason="GPT-2 tokenizer files (../shared/gpt2-tokenizer) not present")
def test_paper_scale_smoke_run_reports_paper_claims_not_comparable(workdir):
    """The paper-scale path offline: gpt2-random (GPT-2-small shape, real tokenizer), shrunk sizes."""
    run = _snakemake(workdir, "--cores", "2", "--config", "scale=paper", "smoke=true")
    assert run.returncode == 0, run.stderr[-4000:]
    claims = json.loads((workdir / "results/paper/induction_heads/claims.json").read_text())
    status = {c["id"]: c["status"] for c in claims["claims"]}
    assert status["gpt2_paper_induction_heads"] == "not comparable"
    assert status["ablating_induction_heads_zero"] == "not comparable"
    assert status["icl_jump_with_induction_heads"] == "not run"
    assert "pass" not in status.values()
    page = next((workdir / "reports/paper").glob("*/induction_heads.html")).read_text()
    assert "gpt2-random" in page and "smoke: random weights" in page
    ioi = {c["id"]: c["status"] for c in json.loads((workdir / "results/paper/ioi/claims.json").read_text())["claims"]}
    assert ioi["logit_difference"] == ioi["paper_circuit_faithfulness"] == "not comparable"
    assert ioi["toy_circuit_is_faithful"] == "not run" and "pass" not in ioi.values()
    summary = json.loads((workdir / "results/paper/ioi/analysis/summary.json").read_text())
    assert summary["n_prompts"] == 2 and summary["n_groups"] == 2  # one template, ABBA and BABA, GPT-2 BPE
    assert "paper_circuit.faithfulness" in summary
    assert (next((workdir / "reports/paper").glob("*/ioi.html"))).read_text().count("data:image/png;base64") >= 5
    gt = {c["id"]: c["status"] for c in
          json.loads((workdir / "results/paper/greater_than/claims.json").read_text())["claims"]}
    assert gt["probability_difference"] == gt["paper_circuit_faithfulness"] == gt["recall_end_heads"] == "not comparable"
    assert gt["toy_circuit_is_faithful"] == "not run" and "pass" not in gt.values()
    gt_summary = json.loads((workdir / "results/paper/greater_than/analysis/summary.json").read_text())
    assert gt_summary["n_prompts"] == 4 and "paper_circuit.faithfulness" in gt_summary
    assert "recall.end_heads" in gt_summary  # overlap is computed for the GPT-2-small shape
    gt_page = next((workdir / "reports/paper").glob("*/greater_than.html")).read_text()
    assert "Hanna et al." in gt_page and gt_page.count("data:image/png;base64") >= 5
    mono = {c["id"]: c["status"] for c in
            json.loads((workdir / "results/paper/monosemanticity/claims.json").read_text())["claims"]}
    assert mono["gpt2_res_jb_l0"] == "not comparable" and mono["toy_loss_recovered"] == "not run"
    mono_summary = json.loads((workdir / "results/paper/monosemanticity/analysis/summary.json").read_text())
    assert mono_summary["sae.x1.d_sae"] == 3072  # gpt2-random's first MLP, the real GPT-2 BPE on synthetic text
    assert {r["layer"] for r in mono_summary["pretrained.rows"]} == {0, 11}


@pytest.mark.parametrize("args,needle", [
    (["--config", "scale=huge"], "'scale'"),
    (["--config", "scale=ci", "n_probez=3"], "n_probez"),
    (["--config", "scale=ci", "seed=-1"], "'seed'"),
    (["--config", "scale=toy", "smoke=true"], "only the paper scale"),
])
def test_bad_config_stops_before_any_job(workdir, args, needle):
    run = _snakemake(workdir, "-n", "--cores", "1", *args)
    assert run.returncode != 0
    assert needle in run.stdout + run.stderr
    assert "Job stats" not in run.stdout + run.stderr


def test_lint_is_clean(workdir):
    run = _snakemake(workdir, "--lint", "--cores", "1", "--config", "scale=ci")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
