"""Shared fixtures: tiny seeded models, including a hand-built one with a known answer."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

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


def hand_built_induction_model(d_vocab: int = 12, n_ctx: int = 16, sharpness: float = 40.0) -> HookedTransformer:
    """Layer 0 head 0 is a perfect previous-token head, layer 1 head 0 a perfect induction head.

    Residual stream = [token one-hot (d_vocab) | position one-hot (n_ctx) | previous token one-hot (d_vocab)].
    L0H0: queries read position p, keys position p-1 -> attends to the previous position, and copies that
    position's token into the "previous token" slot. L1H0: queries read the current token, keys the
    previous-token slot -> attends to the position right after an earlier copy of the current token.
    Heads 1 have zero weights (uniform attention). No LayerNorm.
    """
    d_model = 2 * d_vocab + n_ctx
    d_head = max(d_vocab, n_ctx)
    cfg = HookedTransformerConfig(n_layers=2, d_model=d_model, n_heads=2, d_head=d_head, n_ctx=n_ctx,
                                  d_vocab=d_vocab, attn_only=True, normalization_type=None,
                                  positional_embedding_type="standard", default_prepend_bos=False, seed=0)
    m = HookedTransformer(cfg, move_to_device=False)
    tok, pos, prev = slice(0, d_vocab), slice(d_vocab, d_vocab + n_ctx), slice(d_vocab + n_ctx, d_model)
    eye_v, eye_n = torch.eye(d_vocab), torch.eye(n_ctx)
    scale = sharpness * d_head**0.5  # TransformerLens divides scores by sqrt(d_head)
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        m.W_E[:, tok] = eye_v
        m.W_pos[:, pos] = eye_n
        # L0H0: previous-token head
        m.blocks[0].attn.W_Q[0, pos, :n_ctx] = eye_n * scale ** 0.5
        m.blocks[0].attn.W_K[0, pos, :n_ctx] = torch.roll(eye_n, shifts=1, dims=1) * scale ** 0.5  # key p' -> dim p'+1
        m.blocks[0].attn.W_K[0, pos, 0] = 0.0  # no wrap-around: the last position is nobody's previous
        m.blocks[0].attn.W_V[0, tok, :d_vocab] = eye_v
        m.blocks[0].attn.W_O[0, :d_vocab, prev] = eye_v
        # L1H0: induction head
        m.blocks[1].attn.W_Q[0, tok, :d_vocab] = eye_v * scale ** 0.5
        m.blocks[1].attn.W_K[0, prev, :d_vocab] = eye_v * scale ** 0.5
        m.blocks[1].attn.W_V[0, tok, :d_vocab] = eye_v
        m.blocks[1].attn.W_O[0, :d_vocab, tok] = 3 * eye_v  # outweighs the direct path (current token)
        m.W_U[tok, :] = eye_v
    return m.eval()


def distinct_probes(n: int, length: int, d_vocab: int, bos: int = 0, seed: int = 0) -> torch.Tensor:
    """[BOS, r, r] with r distinct non-BOS tokens (so each token has exactly one earlier occurrence)."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        r = torch.randperm(d_vocab - 1, generator=g)[:length] + 1
        rows.append(torch.cat([torch.tensor([bos]), r, r]))
    return torch.stack(rows)


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
