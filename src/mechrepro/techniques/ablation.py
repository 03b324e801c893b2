"""Zero- and mean-ablation of attention heads (Olsson et al. 2022, §"Ablations").

A head is ablated by replacing its output ``hook_z`` (before W_O) with zeros, or with its mean
over a reference batch at each position. The model is otherwise unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from mechrepro.techniques import hooks
from mechrepro.techniques.losses import per_token_loss_from_logits

Head = tuple[int, int]


@torch.inference_mode()
def mean_head_outputs(model: HookedTransformer, reference: Int[Tensor, "batch pos"]
                      ) -> Float[Tensor, "layer pos head d_head"]:
    """Mean of every head's ``z`` over the reference batch, per position."""
    names = [hooks.z(layer) for layer in range(model.cfg.n_layers)]
    _, cache = model.run_with_cache(reference, names_filter=lambda n: n in names, return_type=None)
    return torch.stack([cache[n].mean(0) for n in names])


def _ablation_hooks(model, heads: Iterable[Head], method: str, means: Tensor | None):
    if method not in ("zero", "mean"):
        raise ValueError(f"ablation method must be 'zero' or 'mean', not {method!r}")
    if method == "mean" and means is None:
        raise ValueError("mean ablation needs the reference means (mean_head_outputs)")
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        hooks.check_head(model, layer, head)
        by_layer.setdefault(layer, []).append(head)

    def make(layer: int, hs: list[int]):
        def hook(z, hook):  # z: [batch pos head d_head]
            if method == "zero":
                z[:, :, hs] = 0.0
            else:
                z[:, :, hs] = means[layer, : z.shape[1], hs].to(z.dtype)
            return z
        return hook

    return [(hooks.z(layer), make(layer, hs)) for layer, hs in by_layer.items()]


@torch.inference_mode()
def ablated_per_token_loss(model: HookedTransformer, tokens: Int[Tensor, "batch pos"], heads: Iterable[Head],
                           method: str = "zero", means: Tensor | None = None) -> Float[Tensor, "batch pos_minus_1"]:
    """Per-token loss with ``heads`` ablated (no heads: the clean loss)."""
    fwd_hooks = _ablation_hooks(model, list(heads), method, means)
    logits = model.run_with_hooks(tokens, fwd_hooks=fwd_hooks)
    return per_token_loss_from_logits(logits, tokens)
