"""Composition scores between attention heads (Elhage et al. 2021, §"Composition").

For an earlier head h1 and a later head h2, the K-composition score is

    ||W_OV^{h1} W_QK^{h2 T}||_F / (||W_OV^{h1}||_F ||W_QK^{h2 T}||_F)

(TransformerLens row-vector convention: ``W_OV = W_V W_O``, ``W_QK = W_Q W_K^T``). It measures how
much of what h1 writes is read by h2's keys; an induction head is built by K-composition with a
previous-token head. Q- and V-composition use ``W_QK`` and ``W_OV`` of h2 instead.

The paper compares scores against those of random matrices of the same shapes, since even
unrelated low-rank matrices score above zero; :func:`random_baseline` does that.

Computed through d_head × d_head Gram matrices, never the d_model × d_model products, so GPT-2
small's 144 × 144 head pairs take milliseconds.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor


def _gram(a: Tensor) -> Tensor:
    """a: [..., d_model, d_head] -> a^T a: [..., d_head, d_head]."""
    return a.transpose(-1, -2) @ a


def _scores(W_V, W_O, W_A, W_B) -> Tensor:
    """||W_V W_O W_A W_B^T||_F / (||W_V W_O||_F ||W_A W_B^T||_F) for all (h1, h2) pairs.

    W_V: [h1 d_model d_head], W_O: [h1 d_head d_model], W_A, W_B: [h2 d_model d_head].
    """
    gv = _gram(W_V)  # [h1 dh dh]
    gb = _gram(W_B)  # [h2 dh dh]
    m = torch.einsum("iem,jmf->ijef", W_O, W_A)  # W_O[h1] @ W_A[h2]: [h1 h2 dh dh]
    # ||W_V M W_B^T||^2 = tr(M^T G_V M G_B)
    num = torch.einsum("ijef,ieg,ijgh,jhf->ij", m, gv, m, gb).clamp_min(0).sqrt()
    ov = torch.einsum("ieg,igm,iem->i", gv, W_O, W_O).clamp_min(0).sqrt()  # tr(G_V W_O W_O^T)
    ab = torch.einsum("jef,jfe->j", _gram(W_A), gb).clamp_min(0).sqrt()  # tr(G_A G_B)
    return num / (ov[:, None] * ab[None, :])


def composition_scores(W_Q, W_K, W_V, W_O, mode: str = "K") -> Float[Tensor, "l1 h1 l2 h2"]:
    """Composition scores for all head pairs; entries with l2 <= l1 are zero (as in TransformerLens).

    Weights in TransformerLens layout: W_Q, W_K, W_V: [layer head d_model d_head], W_O: [layer head d_head d_model].
    """
    n_l, n_h = W_Q.shape[:2]
    flat = lambda w: w.reshape(n_l * n_h, *w.shape[2:]).float()  # noqa: E731
    q, k, v, o = map(flat, (W_Q, W_K, W_V, W_O))
    if mode == "K":  # later head's keys read: W_OV W_QK^T = W_V W_O (W_K W_Q^T)
        s = _scores(v, o, k, q)
    elif mode == "Q":  # later head's queries read: W_OV W_QK = W_V W_O (W_Q W_K^T)
        s = _scores(v, o, q, k)
    elif mode == "V":  # later head's values read: W_OV W_OV = W_V W_O W_V W_O
        s = _scores(v, o, v, o.transpose(-1, -2))
    else:
        raise ValueError(f"mode must be 'Q', 'K' or 'V', not {mode!r}")
    s = s.view(n_l, n_h, n_l, n_h)
    layers = torch.arange(n_l)
    mask = (layers[:, None, None, None] < layers[None, None, :, None])
    return torch.where(mask, s, torch.zeros_like(s))


def model_composition_scores(model, mode: str = "K") -> Float[Tensor, "l1 h1 l2 h2"]:
    with torch.inference_mode():
        return composition_scores(model.W_Q, model.W_K, model.W_V, model.W_O, mode)


def random_baseline(d_model: int, d_head: int, mode: str = "K", n_samples: int = 200, seed: int = 0
                    ) -> Float[Tensor, " sample"]:
    """Scores of pairs of Gaussian random heads of the same shapes (the paper's baseline)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    W_Q, W_K, W_V = (r(2, n_samples, d_model, d_head) for _ in range(3))
    W_O = r(2, n_samples, d_head, d_model)
    s = composition_scores(W_Q, W_K, W_V, W_O, mode)  # [2 n 2 n]; pairs (0,i)->(1,i)
    return s[0, :, 1, :].diagonal()
