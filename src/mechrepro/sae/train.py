"""Sparse autoencoders on a one-layer model's MLP neurons, trained with SAELens (Bricken et al. 2023,
*Towards Monosemanticity*: a ReLU autoencoder with an L1 penalty on the feature activations, trained on the
MLP's neuron activations, at several dictionary sizes).

The activations are cached once from the model on corpus documents (every position but BOS), shuffled with
a seed, and fed to SAELens's ``SAETrainer`` (``StandardTrainingSAE``: ReLU encoder, L1 penalty weighted by
the decoder norms, SAELens's own initialisation and optimiser). Nothing here rewrites what SAELens provides;
this module only chooses the data, the sizes and the seed, and saves the SAE as SAELens does (safetensors +
JSON config).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from mechrepro.io import set_aside

MLP_HOOK = "blocks.0.mlp.hook_post"  # the neurons of a one-layer model's MLP (Bricken et al. §"Setup")


@dataclass(frozen=True)
class DictionaryConfig:
    """One SAE: ``expansion`` x d_mlp features, trained on ``n_samples`` activations."""

    expansion: int
    l1_coefficient: float
    n_samples: int
    batch_size: int
    lr: float
    seed: int

    def __post_init__(self):
        for k in ("expansion", "n_samples", "batch_size"):
            if getattr(self, k) < 1:
                raise ValueError(f"monosemanticity dictionary: {k} must be >= 1, got {getattr(self, k)}")
        if self.l1_coefficient <= 0 or not 0 < self.lr < 1:
            raise ValueError(f"monosemanticity dictionary: need l1_coefficient > 0 and 0 < lr < 1, got "
                             f"{self.l1_coefficient}, {self.lr}")
        if self.n_samples < self.batch_size:
            raise ValueError(f"monosemanticity dictionary: n_samples {self.n_samples} is less than one batch "
                             f"({self.batch_size})")


@torch.inference_mode()
def activations_at(model: HookedTransformer, tokens: Int[Tensor, "doc pos"], hooks: list[str],
                   batch_size: int = 64) -> dict[str, Float[Tensor, "token d"]]:
    """Each hook's activations at every position but the first (BOS), documents in order, one pass for all hooks."""
    missing = [h for h in hooks if h not in model.hook_dict]
    if missing:
        raise ValueError(f"the model has no hook {missing[0]!r} (an attention-only model has no MLP neurons)")
    parts: dict[str, list[Tensor]] = {h: [] for h in hooks}
    for i in range(0, len(tokens), batch_size):
        with torch.no_grad():  # plain tensors (not inference-mode ones): the SAEs train on them
            _, cache = model.run_with_cache(tokens[i:i + batch_size].to(model.cfg.device),
                                            names_filter=hooks.__contains__)
        for h in hooks:
            parts[h].append(cache[h][:, 1:].flatten(0, 1).float().cpu())  # [doc*(pos-1) d]
    return {h: torch.cat(v) for h, v in parts.items()}


def mlp_activations(model: HookedTransformer, tokens: Int[Tensor, "doc pos"], hook: str = MLP_HOOK,
                    batch_size: int = 64) -> Float[Tensor, "token d_mlp"]:
    """The MLP neurons' activations at every position but the first (BOS), documents in order."""
    return activations_at(model, tokens, [hook], batch_size)[hook]


def _batches(acts: Tensor, batch_size: int, seed: int) -> Iterator[Tensor]:
    """Shuffled batches, reshuffled (with the same seeded generator) at every pass over the data."""
    g = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(acts), generator=g)
        for i in range(0, len(order) - batch_size + 1, batch_size):
            yield acts[order[i:i + batch_size]]


def train_sae(acts: Float[Tensor, "token d_in"], cfg: DictionaryConfig):
    """Train a SAELens ``StandardTrainingSAE`` of ``cfg.expansion * d_in`` features on ``acts``."""
    from sae_lens import SAETrainer, StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.config import LoggingConfig, SAETrainerConfig

    d_in = acts.shape[1]
    torch.manual_seed(cfg.seed)
    sae = StandardTrainingSAE(StandardTrainingSAEConfig(
        d_in=d_in, d_sae=cfg.expansion * d_in, l1_coefficient=cfg.l1_coefficient,
        normalize_activations="expected_average_only_in", device="cpu"))
    steps = cfg.n_samples // cfg.batch_size
    trainer = SAETrainer(
        cfg=SAETrainerConfig(total_training_samples=steps * cfg.batch_size, train_batch_size_samples=cfg.batch_size,
                             lr=cfg.lr, lr_end=cfg.lr / 10, lr_scheduler_name="cosineannealing",
                             lr_warm_up_steps=min(100, steps // 10), lr_decay_steps=steps // 5, device="cpu",
                             n_batches_for_norm_estimate=min(100, max(1, len(acts) // cfg.batch_size)),
                             logger=LoggingConfig(log_to_wandb=False)),
        sae=sae, data_provider=_batches(acts, cfg.batch_size, cfg.seed))
    return trainer.fit()  # SAELens folds its activation scaling into the weights: the SAE reads raw activations


def save_sae(sae, path: str | Path) -> None:
    """SAELens's own format: safetensors weights + cfg.json (written to a temporary folder, then renamed)."""
    import shutil

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    sae.save_model(tmp)
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


def load_sae(path: str | Path):
    from sae_lens import SAE

    if not (Path(path) / "cfg.json").exists():
        raise FileNotFoundError(f"no SAE at {path} (expected cfg.json and sae_weights.safetensors there)")
    try:
        return SAE.load_from_disk(path)
    except Exception as err:  # a truncated or corrupt weights file: SafetensorError or a JSON error, by version
        raise ValueError(f"the SAE at {path} cannot be read ({type(err).__name__}: {err}); {set_aside(path)}") from err
