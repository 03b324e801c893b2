"""End to end: the ci scale through Snakemake in a temporary directory (minutes on 2 cores), killed once
mid-training and completed by rerunning the same command; its corpora, the models the kill interrupted and every
analysis made again in a second directory and compared byte for byte; its reports opened in a headless Chromium."""

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors import safe_open

from conftest import copy_workflow

ROOT = Path(__file__).resolve().parents[1]
CI = ("--cores", "2", "--config", "scale=ci")
# Where the interruption happens: the longest training job of the ci scale, a quarter of the way in.
KILLED_MODEL, KILL_AFTER_STEP = "toy-lm-ci", 300
SLUGS = ("induction_heads", "ioi", "greater_than", "monosemanticity", "circuit_discovery")


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, capture_output=True, text=True,
                          timeout=1800)


def _resume_step(model_dir: Path) -> int:
    try:
        with safe_open(str(model_dir / "checkpoints/resume.safetensors"), "pt") as f:
            return int(f.metadata()["step"])
    except Exception:  # not written yet
        return 0


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    """A copy of the workflow (not of results/ or reports/), as a user's fresh checkout would have.

    ``MECHREPRO_E2E_DIR`` keeps it at a known place (.ci/run compares its smallest model with the one the SLURM
    step trains)."""
    keep = os.environ.get("MECHREPRO_E2E_DIR")
    d = Path(keep) if keep else tmp_path_factory.mktemp("e2e")
    if keep:
        shutil.rmtree(d, ignore_errors=True)
    return copy_workflow(d)


@pytest.fixture(scope="session")
def ci_run(workdir) -> dict:
    """The ci scale, SIGKILLed (the whole process group, as when a node is lost) while training
    {KILLED_MODEL}, then completed by rerunning the same command, as the README's Troubleshooting says."""
    log = (workdir / "first_run.log").open("w")
    first = subprocess.Popen([sys.executable, "-m", "snakemake", *CI], cwd=workdir, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
    model_dir = workdir / f"results/ci/models/{KILLED_MODEL}"
    deadline = time.monotonic() + 1500
    while _resume_step(model_dir) < KILL_AFTER_STEP:
        assert first.poll() is None, "the first run ended before it could be killed:\n" + \
            (workdir / "first_run.log").read_text()[-3000:]
        assert time.monotonic() < deadline, f"{KILLED_MODEL} did not reach step {KILL_AFTER_STEP}"
        time.sleep(0.5)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    log.close()
    killed_at = _resume_step(model_dir)
    assert not (model_dir / "model.json").exists()
    # The half-written outputs are not taken as complete: the same command refuses them ...
    again = _snakemake(workdir, *CI)
    assert again.returncode != 0 and "IncompleteFilesException" in again.stderr, again.stderr[-3000:]
    incomplete = again.stderr.split("Incomplete files:")[-1]
    assert f"results/ci/models/{KILLED_MODEL}/" in incomplete
    # ... and after --unlock (a killed Snakemake leaves its lock), --rerun-incomplete completes the run.
    assert _snakemake(workdir, "--unlock", *CI).returncode == 0
    t0 = time.monotonic()
    final = _snakemake(workdir, *CI, "--rerun-incomplete")
    assert final.returncode == 0, final.stderr[-4000:]
    # Every training job the kill interrupted (the killed model and whatever trained beside it): the second_run
    # fixture trains each again without interruption and compares the bytes.
    interrupted = set(re.findall(r"results/ci/models/([^/\s]+)/(?:model\.safetensors|model\.json|checkpoints\.json|"
                                  r"train_log\.csv|tokenizer\.json)", incomplete))
    return {"killed_at": killed_at, "rerun_s": time.monotonic() - t0, "stderr": final.stderr,
            "interrupted": interrupted}


@pytest.mark.e2e
def test_ci_scale_end_to_end(workdir, ci_run):
    # The killed training job resumed from its newest resume state (and the run went on to the end).
    train_log = (workdir / f"results/ci/logs/train_{KILLED_MODEL}.log").read_text()
    assert ci_run["killed_at"] >= KILL_AFTER_STEP
    assert f"resumed from step {ci_run['killed_at']}" in train_log
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
    # Edge-level discovery at the ci scale (the tiny graph of toy-lm-ci: 110 edges), in both reports, led by it.
    for slug, html in (("ioi", ioi_page), ("greater_than", gt_page)):
        found = json.loads((workdir / f"results/ci/{slug}/discovery/summary.json").read_text())
        assert found["n_edges"] == 110 and {"exact.cpr", "eap.cpr", "eap_ig.cpr", "random.cpr_high"} <= set(found)
        assert found["eap_ig.cpr_low"] <= found["eap_ig.cpr_high"] and found["config"]["n_bootstrap"] >= 10
        metrics = json.loads((workdir / f"results/ci/{slug}/metrics.json").read_text())
        assert metrics["edge.eap_ig.cpr"] == found["eap_ig.cpr"]
        assert html.index("What was found") < html.index("Provenance") < html.index(
            "Circuit discovery over the whole graph (EAP")  # the section heading (the summary names it before)
        assert html.count("data:image/png;base64") >= 7  # the replication's figures, the curves and the edge circuit
    ioi_status = {c["id"]: c["status"] for c in ioi_claims["claims"]}
    assert all(ioi_status[k] in ("pass", "fail") for k in (
        "toy_circuit_is_small", "toy_circuit_beats_random_edges")) and ioi_status["eap_ig_edges_for_faithful_circuit"] \
        == "not run"
    mono_page = (reports[0].parent / "monosemanticity.html").read_text()
    assert "Towards Monosemanticity" in mono_page and "toy-1l-mlp-ci" in mono_page
    assert mono_page.count("data:image/png;base64") >= 9 and "sae-context" in mono_page  # figures, token contexts
    mono = {c["id"]: c["status"] for c in json.loads(
        (workdir / "results/ci/monosemanticity/claims.json").read_text())["claims"]}
    assert mono["toy_loss_recovered"] in ("pass", "fail") and mono["gpt2_res_jb_l0"] == "not run"
    # Discovery methods against known circuits: every ground truth built and scored under both ablations, the
    # report led by what was found, the claims decided at this scale, ACDC's GPT-2 numbers not run.
    cd_page = (reports[0].parent / "circuit_discovery.html").read_text()
    assert cd_page.index("What was found") < cd_page.index("Claims") < cd_page.index("The ground truths")
    assert cd_page.count("data:image/png;base64") >= 4
    cd = {c["id"]: c["status"] for c in json.loads(
        (workdir / "results/ci/circuit_discovery/claims.json").read_text())["claims"]}
    assert cd["acdc_gpt2_ioi_auc"] == cd["acdc_gpt2_greater_than_auc"] == cd["tracr_reverse_best_edge_auroc"] == "not run"
    assert all(v in ("pass", "fail") for k, v in cd.items() if not k.startswith(("acdc_", "tracr_reverse"))), cd
    cd_metrics = json.loads((workdir / "results/ci/circuit_discovery/metrics.json").read_text())
    for truth in yaml.safe_load((workdir / "workflow/config/ci.yaml").read_text())["circuit_discovery"]["truths"]:
        assert {f"{truth}.eap_ig.matched.edge_auroc", f"{truth}.eap_ig.mismatched.edge_auroc",
                f"{truth}.random.matched.edge_auroc", f"{truth}.truth.mismatched.faithfulness"} <= set(cd_metrics), truth
        # the yardstick: exact ground truths keep the whole metric under their own ablation; the planted IOI
        # model's edge-level circuit is measured (a finite number), not assumed
        f = cd_metrics[f"{truth}.truth.matched.faithfulness"]
        assert f == pytest.approx(1, abs=1e-3) if truth != "planted_ioi" else math.isfinite(f), (truth, f)
    for html in (page, ioi_page, gt_page, mono_page, cd_page, (reports[0].parent / "models.html").read_text()):
        assert not re.search(r"<script[^>]+src=[\"']?https?:", html, re.I)
        assert not re.search(r"<link[^>]+href=[\"']?https?:", html, re.I)
        assert not re.search(r"url\(\s*[\"']?https?:|@import", html, re.I)
        assert "data:image/png;base64" in html and "Traceback" not in html and "Warning" not in html
    index = (workdir / "reports/ci/index.html").read_text()
    assert all(slug in index for slug in SLUGS)
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

    dry = _snakemake(workdir, "-n", *CI)
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "Nothing to be done" in dry.stdout + dry.stderr
    # Every report's provenance shows the seeds (determinism: the second_run tests below).
    for slug in SLUGS:
        seeds = json.loads((reports[0].parent / f"{slug}.provenance.json").read_text())["seeds"]
        html = (reports[0].parent / f"{slug}.html").read_text()
        assert "config" in seeds and all(name in html for name in seeds), (slug, seeds)
    assert {"train toy-lm-ci", "corpus lm"} <= set(json.loads(
        (reports[0].parent / "ioi.provenance.json").read_text())["seeds"])


def result_tables(results: Path) -> dict[str, bytes]:
    """Every claims.json, metrics and summary JSON and CSV table of a run, by relative path (not the logs and the
    job timings, which differ from run to run by nature)."""
    return {str(f.relative_to(results)): f.read_bytes() for f in sorted(results.rglob("*"))
            if f.suffix in (".json", ".csv") and f.relative_to(results).parts[0] not in ("logs", "benchmarks")}


def file_bytes(path: Path) -> bytes:
    """A file's bytes; a safetensors file's header in a canonical key order, then its tensor bytes unchanged.

    safetensors writes a file's metadata (a Rust HashMap: here a checkpoint's step and token count) in an order that
    changes from process to process, so the same tensors and metadata can give different bytes."""
    blob = path.read_bytes()
    if path.suffix != ".safetensors":
        return blob
    n = int.from_bytes(blob[:8], "little")
    return json.dumps(json.loads(blob[8:8 + n]), sort_keys=True).encode() + blob[8 + n:]


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (weights, resume states and checkpoints included), by relative path."""
    return {str(f.relative_to(folder)): file_bytes(f) for f in sorted(folder.rglob("*")) if f.is_file()}


def job_counts(stderr: str) -> dict[str, int]:
    """Snakemake's "Job stats" table: jobs run per rule."""
    table = stderr.split("Job stats:", 1)[-1].split("\n\n", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m[1] != "total"}


@pytest.fixture(scope="session")
def second_run(workdir, ci_run, tmp_path_factory) -> dict:
    """Determinism on CPU, job by job rather than the whole ci scale again: in a second directory, (1) the
    tokenizer and corpora from scratch; (2) every model the first run's SIGKILL interrupted, trained again from
    scratch and not interrupted; the other models copied from the first run; then (3) every job between the models
    and the claims (capability checks, probes, phase sweeps, analyses, SAEs, superposition, metrics, claims) run
    again. The figures and reports are not made again (the old whole-scale rerun compared none of their bytes)."""
    second = copy_workflow(tmp_path_factory.mktemp("e2e-second"))
    first_results, results = workdir / "results/ci", second / "results/ci"
    ci = yaml.safe_load((second / "workflow/config/ci.yaml").read_text())
    corpora = _snakemake(second, *(f"results/ci/corpus/{c}/meta.json" for c in ci["corpus"]), *CI)
    assert corpora.returncode == 0, corpora.stderr[-4000:]
    # Copied after the corpora are written (with new times), so that Snakemake takes them as up to date; their
    # capability checks are not copied: they run again.
    retrained = sorted(ci_run["interrupted"])
    for model in sorted(set(ci["toy_models"]) - set(retrained)):
        shutil.copytree(first_results / "models" / model, results / "models" / model, copy_function=shutil.copy,
                        ignore=shutil.ignore_patterns("capabilities.json"))
    # Every JSON and CSV file the first run made (claims, metrics, summaries, tables, capability checks), and with
    # them every job upstream of one: all but the figures and reports. The trainings first: they start the longest
    # chains (toy-lm-ci -> the IOI and Greater-Than analyses), and the other jobs fill the second core meanwhile.
    first_trainings = ["--prioritize", *(f"results/ci/models/{m}/model.json" for m in retrained)] if retrained else []
    run = _snakemake(second, *(f"results/ci/{k}" for k in result_tables(first_results)), *CI, *first_trainings)
    assert run.returncode == 0, run.stderr[-4000:]
    return {"dir": second, "retrained": retrained, "jobs": job_counts(run.stderr)}


@pytest.mark.e2e
def test_ci_corpora_and_interrupted_models_rebuilt_are_byte_identical(workdir, ci_run, second_run):
    """The tokenizer and both corpora made again from scratch, and every model that the first run's SIGKILL
    interrupted (and --rerun-incomplete resumed, or restarted) trained again without interruption in another
    directory and process: the same bytes, file by file (weights, resume state, kept checkpoints, training log)."""
    first_results, results = workdir / "results/ci", second_run["dir"] / "results/ci"
    assert KILLED_MODEL in second_run["retrained"]
    assert second_run["jobs"].get("train_toy_model") == len(second_run["retrained"])
    first_corpus, corpus = folder_bytes(first_results / "corpus"), folder_bytes(results / "corpus")
    assert {"tokenizer.json", "lm/train.safetensors", "induction/train.safetensors"} <= set(first_corpus)
    assert sorted(first_corpus) == sorted(corpus) and [k for k in corpus if corpus[k] != first_corpus[k]] == []
    for model in second_run["retrained"]:
        first, again = folder_bytes(first_results / "models" / model), folder_bytes(results / "models" / model)
        first.pop("capabilities.json", None), again.pop("capabilities.json", None)  # compared with the tables below
        assert {"model.safetensors", "train_log.csv", "checkpoints/resume.safetensors"} <= set(again), model
        assert sorted(first) == sorted(again), model
        assert [k for k in first if first[k] != again[k]] == [], model


@pytest.mark.e2e
def test_ci_analyses_rerun_give_identical_claims_and_tables(workdir, ci_run, second_run):
    """Every job from the models to the claims run again in another directory (on the same model bytes): byte-
    identical claims.json files, metrics, summaries and result tables to the first (killed and resumed) run, and
    the same tensors (patching results, attention patterns, probes, SAE weights) too."""
    jobs = second_run["jobs"]
    assert {"capabilities", "induction_heads_probes", "induction_heads_phase", "induction_heads_analysis",
            "ioi_analysis", "greater_than_analysis", "monosemanticity_superposition", "monosemanticity_planted",
            "monosemanticity_sae", "monosemanticity_evaluate", "circuit_discovery_truth", "circuit_discovery_score",
            "claims"} <= set(jobs) and jobs["claims"] == len(SLUGS)
    assert "tokenizer" not in jobs and "corpus" not in jobs  # made by the fixture's first command
    first_results, results = workdir / "results/ci", second_run["dir"] / "results/ci"
    first, again = result_tables(first_results), result_tables(results)
    assert len(first) > 50 and sum(k.endswith("claims.json") for k in first) == len(SLUGS)
    assert sorted(first) == sorted(again)
    assert [k for k in first if first[k] != again[k]] == []
    made = {k: v for k, v in folder_bytes(results).items() if Path(k).parts[0] not in ("logs", "benchmarks")}
    assert sum(k.endswith(".safetensors") and not k.startswith(("corpus", "models")) for k in made) >= 8
    assert [k for k in made if not (first_results / k).exists() or file_bytes(first_results / k) != made[k]] == []


@pytest.mark.e2e
def test_ci_reports_in_a_browser(workdir, ci_run):
    """Every report and the index, in headless Chromium with the network off: rendered, figures present and
    not blank, no request leaving the machine, no console error."""
    from browser import Browser, check_report, require_chromium

    pages = sorted((workdir / "reports/ci").glob("*/*.html"))
    assert len(pages) == len(SLUGS) + 1  # the replications and the model cards
    with Browser(require_chromium()) as b:
        problems = [f"{p.name}: {x}" for p in pages for x in check_report(p, browser=b, min_images=2)]
        problems += [f"index.html: {x}" for x in check_report(workdir / "reports/ci/index.html", browser=b)]
        # the monosemanticity report's feature index: a click on a feature reaches its dashboard, offline
        mono = next(p for p in pages if p.name == "monosemanticity.html")
        page = b.open(mono, screenshot=False, js={"clicked": CLICK_THROUGH})
    assert problems == []
    clicked = page.js["clicked"]
    assert clicked and clicked["hash"] == clicked["href"] and clicked["card"] == "fd-card", clicked
    assert abs(clicked["top"]) < 40 and "Top activations" in clicked["text"] and "Logits it raises" in clicked["text"]
    assert not page.external and not page.console_errors, (page.external, page.console_errors)
    assert mono.stat().st_size < 10e6  # dashboards and index included


# Click the first linked feature of the monosemanticity report's index; where does the page land?
CLICK_THROUGH = """(() => {
  const a = document.querySelector('#feature-index a[href^="#feature-"]');
  if (!a) return null;
  a.click();
  const card = document.getElementById(decodeURIComponent(location.hash.slice(1)));
  return {hash: location.hash, href: a.getAttribute('href'), card: card ? card.className : null,
          top: card ? Math.round(card.getBoundingClientRect().top) : null, text: card ? card.innerText : ''};
})()"""


@pytest.mark.e2e
def test_paper_scale_smoke_run_reports_paper_claims_not_comparable(workdir, ci_run):
    """The paper scale rehearsed through its real code: the papers' model names, loaded by from_pretrained and
    SAE.from_pretrained from a fabricated hub cache, every connection beyond this machine refused (and none tried),
    in a copy of the workflow with no ../shared beside it; every paper claim "not comparable"."""
    assert not (workdir.parent / "shared").exists()
    net_log = workdir / "network_attempts.log"
    env = {**os.environ, "MECHREPRO_NET_LOG": str(net_log),
           "PYTHONPATH": os.pathsep.join(p for p in (str(Path(__file__).parent / "offline"),
                                                     os.environ.get("PYTHONPATH")) if p)}
    for k in ("HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "MECHREPRO_GPT2_TOKENIZER"):
        env.pop(k, None)  # the workflow sets what the smoke run reads
    run = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--config", "scale=paper", "smoke=true"],
                         cwd=workdir, capture_output=True, text=True, timeout=1800, env=env)
    assert run.returncode == 0, run.stderr[-4000:]
    assert not net_log.exists() or net_log.read_text() == "", net_log.read_text()[-2000:]
    manifest = json.loads((workdir / "results/paper/hf/fabricated.json").read_text())
    assert {"gpt2", "NeelNanda/GELU_1L512W_C4_Code", "jbloom/GPT2-Small-SAEs-Reformatted",
            "NeelNanda/c4-code-tokenized-2b"} <= set(manifest["checked"])
    # the loaders that ran are the real ones, each on the fabricated cache (their jobs' logs say which)
    logs = "\n".join(p.read_text() for p in (workdir / "results/paper/logs").glob("*.log"))
    for loaded in ("gpt2-small: loaded by HookedTransformer.from_pretrained('gpt2')",
                   "gelu-1l: loaded by HookedTransformer.from_pretrained('gelu-1l')",
                   "gpt2-small-res-jb/blocks.11.hook_resid_pre: loaded by SAE.from_pretrained"):
        assert loaded in logs and "a fabricated cache: random weights" in logs, loaded
    assert "HookedTransformer(cfg)" not in logs and "seeded random StandardSAE" not in logs
    # every claim about a paper's model is "not comparable" (or not run where its metric is not computed here)
    paper_claims = {}
    for slug in SLUGS:
        for c in json.loads((workdir / f"results/paper/{slug}/claims.json").read_text())["claims"]:
            if "random weights" in c["why"] or c["status"] == "not comparable":
                paper_claims[f"{slug}.{c['id']}"] = c["status"]
    assert paper_claims and set(paper_claims.values()) == {"not comparable"}, paper_claims
    status = {c["id"]: c["status"] for c in json.loads(
        (workdir / "results/paper/induction_heads/claims.json").read_text())["claims"]}
    assert status["gpt2_paper_induction_heads"] == status["ablating_induction_heads_zero"] == "not comparable"
    assert status["icl_jump_with_induction_heads"] == "not run" and "pass" not in status.values()
    page = next((workdir / "reports/paper").glob("*/induction_heads.html")).read_text()
    assert "gpt2-small" in page and "smoke: fabricated hub cache, random weights" in page
    ioi = {c["id"]: c["status"] for c in json.loads((workdir / "results/paper/ioi/claims.json").read_text())["claims"]}
    assert ioi["logit_difference"] == ioi["paper_circuit_faithfulness"] == "not comparable"
    assert ioi["toy_circuit_is_faithful"] == "not run" and "pass" not in ioi.values()
    assert ioi["eap_ig_edges_for_faithful_circuit"] == "not comparable"  # EAP-IG on GPT-2's 32,491 edges ran
    assert json.loads((workdir / "results/paper/ioi/discovery/summary.json").read_text())["n_edges"] == 32491
    summary = json.loads((workdir / "results/paper/ioi/analysis/summary.json").read_text())
    assert summary["n_prompts"] == 2 and summary["n_groups"] == 2  # one template, ABBA and BABA, GPT-2 BPE
    assert summary["random_weights"] is True and "paper_circuit.faithfulness" in summary
    assert (next((workdir / "reports/paper").glob("*/ioi.html"))).read_text().count("data:image/png;base64") >= 5
    gt = {c["id"]: c["status"] for c in
          json.loads((workdir / "results/paper/greater_than/claims.json").read_text())["claims"]}
    assert gt["probability_difference"] == gt["paper_circuit_faithfulness"] == gt["recall_end_heads"] == "not comparable"
    assert gt["toy_circuit_is_faithful"] == "not run" and "pass" not in gt.values()
    assert gt["eap_ig_edges_for_faithful_circuit"] == "not comparable"
    assert "overlap.recall.mlps" in json.loads((workdir / "results/paper/greater_than/discovery/summary.json").read_text())
    gt_summary = json.loads((workdir / "results/paper/greater_than/analysis/summary.json").read_text())
    assert gt_summary["n_prompts"] == 4 and "paper_circuit.faithfulness" in gt_summary
    assert "recall.end_heads" in gt_summary  # overlap is computed for the GPT-2-small shape
    gt_page = next((workdir / "reports/paper").glob("*/greater_than.html")).read_text()
    assert "Hanna et al." in gt_page and gt_page.count("data:image/png;base64") >= 5
    mono = {c["id"]: c["status"] for c in
            json.loads((workdir / "results/paper/monosemanticity/claims.json").read_text())["claims"]}
    assert mono["gpt2_res_jb_l0"] == "not comparable" and mono["toy_loss_recovered"] == "not run"
    mono_summary = json.loads((workdir / "results/paper/monosemanticity/analysis/summary.json").read_text())
    # gelu-1l's MLP at the fabricated width (4 x 64), on its own (fabricated) pre-tokenized dataset
    assert mono_summary["model"] == "gelu-1l" and mono_summary["sae.x1.d_sae"] == 256
    assert {r["layer"] for r in mono_summary["pretrained.rows"]} == {0, 11}


@pytest.mark.parametrize("args,needles", [
    (["--config", "scale=huge"], ["'scale'"]),
    # every invalid key is named at once: a wrong type, an out-of-range value (nested: Snakemake reads it as the
    # string "0", coerced to the schema's integer), a misspelt key
    (["--config", "scale=ci", "seed=abc", "n_probez=3", "ioi={n_prompts: 0}"],
     ["'seed': 'abc' is not of type 'integer'", "'n_probez': unknown key", "'ioi.n_prompts': 0 is less than"]),
    (["--config", "scale=toy", "smoke=true"], ["only the paper scale"]),
    (["--config", "scale=ci", "ioi={model: gpt-7}"], ["unknown model 'gpt-7'; registered: attn-only-1l"]),
])
def test_bad_config_stops_before_any_job(tmp_path, args, needles):
    copy_workflow(tmp_path)
    run = _snakemake(tmp_path, "--cores", "1", *args)
    out = run.stdout + run.stderr
    assert run.returncode != 0 and all(n in out for n in needles), out[-3000:]
    assert "Job stats" not in out and "Traceback" not in out and not (tmp_path / "results").exists()


def test_lint_is_clean(workdir):
    run = _snakemake(workdir, "--lint", "--cores", "1", "--config", "scale=ci")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


@pytest.mark.e2e
def test_truncated_model_gives_a_clear_error_and_the_rerun_retrains_it(workdir, ci_run):
    """A model file truncated after the run (a full disk, a killed copy): the job that loads it stops with a
    message naming the file and what to do; the same command again retrains the model (here rebuilt from its
    intact resume state) and completes. Runs last: it rewrites one model of the ci run."""
    target = "results/ci/models/attn-only-1l-ci/capabilities.json"
    mdir = workdir / "results/ci/models/attn-only-1l-ci"
    weights = mdir / "model.safetensors"
    blob = weights.read_bytes()
    weights.write_bytes(blob[: len(blob) // 2])
    failed = _snakemake(workdir, target, "--forcerun", "capabilities", *CI)
    log = (workdir / "results/ci/logs/capabilities_attn-only-1l-ci.log").read_text()
    assert failed.returncode != 0
    assert "model.safetensors is not a readable safetensors file" in log and "rerun the same command" in log
    assert (mdir / "model.safetensors.corrupt").exists() and not (mdir / "model.json").exists()
    rerun = _snakemake(workdir, target, *CI)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resumed from step" in (workdir / "results/ci/logs/train_attn-only-1l-ci.log").read_text()
    assert weights.read_bytes() == blob  # the same weights as before (no metadata in model files: same bytes)
