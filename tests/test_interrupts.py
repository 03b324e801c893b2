"""A training job killed mid-run (SIGTERM, as Snakemake and SLURM stop jobs, or SIGKILL, as the out-of-memory
killer does) resumes from its newest checkpoint and ends with the same weights as a run never interrupted."""

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from mechrepro.io import load_tensors
from mechrepro.models.registry import ToyRecipe, TrainRecipe
from mechrepro.models.train import train

RECIPE = ToyRecipe(name="attn-only-1l-ci", n_layers=1, d_model=16, n_heads=2, d_head=8, n_ctx=16,
                   normalization_type=None,
                   train=TrainRecipe(n_steps=240, batch_size=4, warmup_steps=10, resume_every=20, n_checkpoints=8,
                                     log_every=7))  # resume states fall between log lines: the partial loss sum must resume too
VOCAB = 40

# The job, as a separate process: the training of train_toy_model.py inside log_to (which turns SIGTERM into a
# clean exit), each step slowed down so that the test can kill it part-way.
JOB = textwrap.dedent("""
    import sys, time, torch
    import mechrepro.models.train as t
    from mechrepro.io import log_to
    sys.path.insert(0, {tests!r})
    from test_interrupts import RECIPE, VOCAB, tokens

    real = t.lm_loss
    def slow(*args):
        time.sleep(0.02)
        return real(*args)
    t.lm_loss = slow
    with log_to({log!r}):
        t.train(RECIPE, tokens(), VOCAB, {out!r}, progress=False)
""")


def tokens():
    return torch.randint(0, VOCAB, (64, 16), generator=torch.Generator().manual_seed(0))


def resume_step(out: Path) -> int:
    path = out / "checkpoints/resume.safetensors"
    if not path.exists():
        return 0
    try:
        with safe_open(str(path), "pt") as f:
            return int(f.metadata()["step"])
    except Exception:  # caught between writes on a slow disk: ask again
        return 0


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("full")
    train(RECIPE, tokens(), VOCAB, out, progress=False)
    return out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_training_job_resumes_to_the_same_weights(tmp_path, uninterrupted, sig):
    out, log = tmp_path / "model", tmp_path / "train.log"
    job = subprocess.Popen([sys.executable, "-c", JOB.format(tests=str(Path(__file__).parent), log=str(log),
                                                               out=str(out))])
    deadline = time.monotonic() + 120
    while resume_step(out) < 60:  # a few resume states written, most of the run still to go
        assert job.poll() is None, f"the job ended before it was killed:\n{log.read_text()}"
        assert time.monotonic() < deadline, "the job wrote no resume state in 2 minutes"
        time.sleep(0.05)
    job.send_signal(sig)
    assert job.wait(timeout=60) == (143 if sig == signal.SIGTERM else -signal.SIGKILL)
    killed_at = resume_step(out)
    assert 60 <= killed_at < RECIPE.train.n_steps
    # Nothing looks complete; a clean stop (SIGTERM) also leaves no temporaries behind.
    assert not (out / "model.safetensors").exists() and not (out / "model.json").exists()
    leftovers = [*out.glob(".*.tmp*"), *(out / "checkpoints").glob(".*.tmp*")]
    if sig == signal.SIGTERM:
        assert leftovers == []

    result = train(RECIPE, tokens(), VOCAB, out, progress=False)  # the rerun
    assert result.resumed_from_step == killed_at
    resumed, full = load_tensors(out / "model.safetensors"), load_tensors(uninterrupted / "model.safetensors")
    assert resumed.keys() == full.keys() and [k for k in resumed if not torch.equal(resumed[k], full[k])] == []
    for same in ("train_log.csv", "checkpoints.json", "model.json"):  # the same bytes, not only the same weights
        assert (out / same).read_bytes() == (uninterrupted / same).read_bytes(), same
    assert [*out.glob(".*.tmp*"), *(out / "checkpoints").glob(".*.tmp*")] == []  # SIGKILL's leftovers cleared
