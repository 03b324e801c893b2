"""Shared fixtures: tiny seeded models, including a hand-built one with a known answer."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

# moved to the library (a ground-truth model); imported here so that `from conftest import ...` keeps working
from mechrepro.groundtruth.handbuilt import distinct_probes, hand_built_induction_model  # noqa: F401

warnings.filterwarnings("ignore", category=DeprecationWarning)


def tiny_attn_only(n_layers=2, n_heads=4, d_model=32, n_ctx=24, d_vocab=50, seed=0, positional="standard",
                   normalization=None) -> HookedTransformer:
    cfg = HookedTransformerConfig(n_layers=n_layers, d_model=d_model, n_heads=n_heads, d_head=d_model // n_heads,
                                  n_ctx=n_ctx, d_vocab=d_vocab, attn_only=True, seed=seed,
                                  positional_embedding_type=positional, normalization_type=normalization,
                                  default_prepend_bos=False)
    model = HookedTransformer(cfg, move_to_device=False)
    # Random (not zero) biases so that the tests exercise them too.
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed + 1)
        for name, p in model.named_parameters():
            if name.endswith(("b_Q", "b_K", "b_V", "b_O")):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def scaled_random_model(cfg: HookedTransformerConfig, weight_scale: float = 4.0) -> HookedTransformer:
    """A seeded random model (seed: ``cfg.seed``) with weight matrices scaled up and random biases, so that patches
    and ablations have visible, distinct effects."""
    torch.manual_seed(cfg.seed)
    m = HookedTransformer(cfg, move_to_device=False).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(weight_scale) if p.ndim > 1 else p.normal_(0, 0.2)
    return m


@pytest.fixture
def hand_model():
    return hand_built_induction_model()


@pytest.fixture
def tiny_model():
    return tiny_attn_only()


def copy_workflow(dest: Path) -> Path:
    """A copy of the workflow (Snakefile, workflow/, replications/; not results/ or reports/) in ``dest``, as a
    user's fresh checkout would have it."""
    root = Path(__file__).resolve().parents[1]
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(root / "Snakefile", dest)
    for sub in ("workflow", "replications"):
        shutil.copytree(root / sub, dest / sub)
    return dest
