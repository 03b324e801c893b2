"""Training loop for the toy models: seeded, deterministic on CPU, resumable.

AdamW with linear warmup and cosine decay. Checkpoints are written as safetensors at log-spaced
token counts (Olsson et al. 2022 study how induction heads form across training, so the early
checkpoints matter as much as the late ones) and are kept. A resume state (weights + AdamW
moments + step) is written beside them; a rerun of a killed job continues from the newest one and
ends with the same weights as an uninterrupted run, because the data order is a pure function of
the seed and the step (nothing else is random during training).
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Int
from safetensors import safe_open
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from mechrepro.io import load_tensors, save_tensors, write_csv, write_json
from mechrepro.models.registry import ToyRecipe, TrainRecipe


@dataclass(frozen=True)
class TrainResult:
    final_loss: float
    tokens_seen: int
    checkpoints: list[dict]
    resumed_from_step: int


def lr_at(step: int, r: TrainRecipe) -> float:
    """Learning rate at ``step``: linear warmup to ``lr``, then cosine decay to ``min_lr_frac * lr``."""
    if step < r.warmup_steps:
        return r.lr * (step + 1) / r.warmup_steps
    progress = (step - r.warmup_steps) / max(1, r.n_steps - r.warmup_steps)
    return r.lr * (r.min_lr_frac + (1 - r.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def checkpoint_steps(r: TrainRecipe) -> list[int]:
    """Log-spaced steps (in tokens, equivalently steps) from ~1/200 of training to the end."""
    first = max(1, r.n_steps // 200)
    steps = np.unique(np.round(np.geomspace(first, r.n_steps, r.n_checkpoints)).astype(int))
    return [int(s) for s in steps]


def data_order(n_docs: int, r: TrainRecipe) -> Int[Tensor, "n_steps batch"]:
    """Document indices for every step: epochs of seeded permutations (pure function of the seed)."""
    g = torch.Generator().manual_seed(r.seed + 1)
    need = r.n_steps * r.batch_size
    order = torch.cat([torch.randperm(n_docs, generator=g) for _ in range(math.ceil(need / n_docs))])
    return order[:need].view(r.n_steps, r.batch_size)


def lm_loss(logits: Tensor, tokens: Tensor) -> Tensor:
    """Mean next-token cross-entropy. logits: [batch pos vocab], tokens: [batch pos]."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())


def run_fingerprint(recipe: ToyRecipe, tokens: Tensor, d_vocab: int) -> str:
    """Hash of everything that determines the run: recipe, vocabulary size and training data."""
    h = hashlib.sha256(json.dumps(recipe.to_dict(), sort_keys=True, default=str).encode())
    h.update(str(d_vocab).encode())
    h.update(tokens.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _save_resume(path: Path, model: HookedTransformer, opt: torch.optim.AdamW, step: int, log: list,
                 fingerprint: str, pending: Tensor, n_pending: int) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    # the loss summed since the last log line: a resume state between two log lines must give the same next line
    tensors["pending"] = torch.stack([pending.double(), torch.tensor(float(n_pending), dtype=torch.float64)])
    for i, p in enumerate(model.parameters()):
        st = opt.state.get(p, {})
        if st:
            tensors[f"adam.{i}.exp_avg"] = st["exp_avg"]
            tensors[f"adam.{i}.exp_avg_sq"] = st["exp_avg_sq"]
            tensors[f"adam.{i}.step"] = st["step"].reshape(1)
    tensors["log"] = torch.tensor(log, dtype=torch.float64).reshape(-1, 4)
    save_tensors(path, tensors, metadata={"step": str(step), "fingerprint": fingerprint})


def _load_resume(path: Path, model: HookedTransformer, opt: torch.optim.AdamW,
                 fingerprint: str) -> tuple[int, list, Tensor, int]:
    t = load_tensors(path)
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    if meta.get("fingerprint") != fingerprint:
        raise ValueError(f"{path} belongs to another recipe or corpus")
    step = int(meta["step"])
    model.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")})
    for i, p in enumerate(model.parameters()):
        if f"adam.{i}.exp_avg" in t:
            opt.state[p] = {"exp_avg": t[f"adam.{i}.exp_avg"].clone(), "exp_avg_sq": t[f"adam.{i}.exp_avg_sq"].clone(),
                            "step": t[f"adam.{i}.step"].reshape(())}
    # rows as the uninterrupted run has them: integer step and tokens (a float 1003520.0 would print as 1.00352e+06)
    pending = t.get("pending", torch.zeros(2, dtype=torch.float64))
    return step, [(int(st), int(tok), loss, lr) for st, tok, loss, lr in t["log"].tolist()], pending[0].clone(), \
        int(pending[1])


def _fresh(recipe: ToyRecipe, d_vocab: int) -> tuple[HookedTransformer, torch.optim.AdamW]:
    """The seeded initial model and its optimizer."""
    r = recipe.train
    torch.manual_seed(r.seed)
    model = HookedTransformer(recipe.tl_config(d_vocab))
    model.train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "W_pos" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "W_pos" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": r.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=r.lr, betas=r.betas)
    return model, opt


def _readable(path: Path) -> bool:
    try:
        load_tensors(path)
    except (FileNotFoundError, ValueError):  # missing, or corrupt (then load_tensors has set it aside)
        return False
    return True


def train(recipe: ToyRecipe, tokens: Int[Tensor, "doc pos"], d_vocab: int, out_dir: str | Path,
          *, progress: bool = True) -> TrainResult:
    """Train ``recipe`` on ``tokens`` and write into ``out_dir``:

    ``checkpoints/step_XXXXXX.safetensors`` (kept), ``checkpoints/resume.safetensors``,
    ``train_log.csv``, ``checkpoints.json`` and finally ``model.safetensors`` + ``model.json``.
    """
    r = recipe.train
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    if tokens.shape[1] < recipe.n_ctx:
        raise ValueError(f"corpus context {tokens.shape[1]} is shorter than {recipe.name}'s n_ctx {recipe.n_ctx}")
    tokens = tokens[:, : recipe.n_ctx]

    model, opt = _fresh(recipe, d_vocab)
    order = data_order(len(tokens), r)
    keep = checkpoint_steps(r)
    tokens_per_step = r.batch_size * recipe.n_ctx

    fingerprint = run_fingerprint(recipe, tokens, d_vocab)
    start = 0
    resume = ckpt_dir / "resume.safetensors"
    if resume.exists():
        try:
            start, log, pending, n_pending = _load_resume(resume, model, opt, fingerprint)
        except ValueError as err:
            warnings.warn(f"{err}; training {recipe.name} from scratch", stacklevel=2)
    broken = [s for s in keep if s <= start and not _readable(ckpt_dir / f"step_{s:06d}.safetensors")]
    if broken:  # a kept checkpoint before the resume point is missing or corrupt: only a full rerun remakes it
        warnings.warn(f"checkpoint step {broken[0]} of {recipe.name} is missing or unreadable; "
                      "training from scratch to rebuild it", stacklevel=2)
        model, opt = _fresh(recipe, d_vocab)
        start = 0
    if start == 0:  # a fresh run: log rows (step, tokens, loss, lr), the loss summed since the last log line (no
        # per-step sync); and checkpoints of an earlier, different run must not pass for this one's
        log, pending, n_pending = [], torch.zeros((), dtype=torch.float64), 0
        for stale in ckpt_dir.glob("step_*.safetensors"):
            stale.unlink()
    for leftover in [*out_dir.glob(".*.tmp*"), *ckpt_dir.glob(".*.tmp*")]:  # temporaries of a killed run
        leftover.unlink()

    bar = tqdm(range(start, r.n_steps), desc=f"train {recipe.name}", disable=not progress, initial=start,
               total=r.n_steps, mininterval=2.0)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, r)
        batch = tokens[order[step]]
        loss = lm_loss(model(batch), batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        pending += loss.detach()
        n_pending += 1
        done = step + 1
        if done % r.log_every == 0 or done == r.n_steps:
            mean = float(pending) / n_pending
            log.append((done, done * tokens_per_step, mean, lr_at(step, r)))
            pending.zero_()
            n_pending = 0
            bar.set_postfix(loss=f"{mean:.3f}")
        if done in keep:
            save_tensors(ckpt_dir / f"step_{done:06d}.safetensors", model.state_dict(),
                         metadata={"step": str(done), "tokens": str(done * tokens_per_step)})
        if done in keep or done % r.resume_every == 0:
            _save_resume(resume, model, opt, done, log, fingerprint, pending, n_pending)

    checkpoints = [{"step": s, "tokens": s * tokens_per_step, "path": f"checkpoints/step_{s:06d}.safetensors"}
                   for s in keep]
    write_csv(out_dir / "train_log.csv", pd.DataFrame(log, columns=["step", "tokens", "loss", "lr"]))
    write_json(out_dir / "checkpoints.json", checkpoints)
    save_tensors(out_dir / "model.safetensors", model.state_dict())
    final_loss = log[-1][2] if log else float("nan")
    write_json(out_dir / "model.json", {
        "name": recipe.name, "kind": "toy", "recipe": recipe.to_dict(), "d_vocab": d_vocab,
        "tokens_seen": r.n_steps * tokens_per_step, "final_loss": final_loss,
        "n_params": sum(p.numel() for p in model.parameters()),
    })
    return TrainResult(final_loss, r.n_steps * tokens_per_step, checkpoints, start)
