"""Planted features: can an SAE recover directions we know? (Sharkey, Braun & Millidge 2022, *Taking features out
of superposition with sparse autoencoders*; the check Bricken et al. 2023 build on.)

Activations are generated from a known dictionary: ``n_features`` unit directions in ``d_model`` dimensions
(more features than dimensions), each firing independently and rarely. SAELens provides every piece: the
dictionary (``FeatureDictionary``), the sparse feature activations (``ActivationGenerator``), the training loop
(``train_toy_sae``) and the ground-truth evaluation (``eval_sae_on_synthetic_data``). We add the measure of the
original paper, the mean max cosine similarity (MMCS) between the true directions and the learned decoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mechrepro.sae.metrics import cosine_matrix, mean_max_cosine


@dataclass(frozen=True)
class PlantedConfig:
    n_features: int
    d_model: int
    expansion: float  # d_sae = expansion * n_features
    mean_active: float  # expected number of features firing per sample
    l1_coefficient: float
    n_samples: int
    batch_size: int
    lr: float
    seed: int

    def __post_init__(self):
        if not 1 <= self.d_model < self.n_features:
            raise ValueError(f"monosemanticity.planted: need 1 <= d_model < n_features (superposition), got "
                             f"d_model {self.d_model}, n_features {self.n_features}")
        if not 0 < self.mean_active < self.n_features:
            raise ValueError(f"monosemanticity.planted.mean_active must be in (0, n_features), got {self.mean_active}")
        for k in ("expansion", "l1_coefficient", "lr"):
            if getattr(self, k) <= 0:
                raise ValueError(f"monosemanticity.planted.{k} must be > 0, got {getattr(self, k)}")
        if self.n_samples < self.batch_size or self.batch_size < 1:
            raise ValueError("monosemanticity.planted: need 1 <= batch_size <= n_samples")

    @property
    def d_sae(self) -> int:
        return int(round(self.expansion * self.n_features))


def run_planted(cfg: PlantedConfig) -> dict:
    """Train an SAE on activations from planted features; return its MMCS against them, each true feature's best
    cosine, and SAELens's synthetic-data evaluation (L0 against the true L0, dead latents, explained variance, MCC)."""
    from sae_lens import StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.synthetic import (
        ActivationGenerator,
        FeatureDictionary,
        eval_sae_on_synthetic_data,
        train_toy_sae,
    )

    torch.manual_seed(cfg.seed)
    truth = FeatureDictionary(cfg.n_features, cfg.d_model, seed=cfg.seed)
    gen = ActivationGenerator(cfg.n_features, firing_probabilities=cfg.mean_active / cfg.n_features,
                              std_firing_magnitudes=0.25, mean_firing_magnitudes=1.0)
    sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=cfg.d_model, d_sae=cfg.d_sae,
                                                        l1_coefficient=cfg.l1_coefficient, device="cpu"))
    train_toy_sae(sae, truth, gen, training_samples=cfg.n_samples, batch_size=cfg.batch_size, lr=cfg.lr)
    ev = eval_sae_on_synthetic_data(sae, truth, gen, num_samples=20_000, batch_size=5_000)
    true_dirs = truth.feature_vectors.detach()
    decoder = sae.W_dec.detach()  # [d_sae d_model]
    best = cosine_matrix(true_dirs, decoder).max(dim=1).values  # [true feature]; their mean is the MMCS
    mmcs = mean_max_cosine(decoder, true_dirs)
    return {"mmcs": mmcs, "best_cosine": best.float(),
            "summary": {"planted.mmcs": mmcs, "planted.true_l0": ev.true_l0,
                        "planted.sae_l0": ev.sae_l0, "planted.dead_latents": ev.dead_latents,
                        "planted.explained_variance": ev.explained_variance, "planted.mcc": ev.mcc,
                        "planted.n_features": cfg.n_features, "planted.d_model": cfg.d_model,
                        "planted.d_sae": cfg.d_sae}}
