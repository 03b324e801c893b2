"""Zero- and mean-ablation of attention heads (Olsson et al. 2022, §"Ablations").

A head is ablated by replacing its output ``hook_z`` (before W_O) with zeros, or with its mean
over a reference batch at each position. The model is otherwise unchanged. The forward passes run
on the batched patching engine (:mod:`mechrepro.techniques.patching`).
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


def ablated_per_token_loss(model: HookedTransformer, tokens: Int[Tensor, "batch pos"], heads: Iterable[Head],
                           method: str = "zero", means: Tensor | None = None) -> Float[Tensor, "batch pos_minus_1"]:
    """Per-token loss with ``heads`` ablated (no heads: the clean loss)."""
    return ablated_per_token_losses(model, tokens, [list(heads)], method, means)[0]


def ablated_per_token_losses(model: HookedTransformer, tokens: Int[Tensor, "batch pos"],
                             head_sets: list[list[Head]], method: str = "zero", means: Tensor | None = None
                             ) -> list[Float[Tensor, "batch pos_minus_1"]]:
    """Per-token loss for each set of heads ablated together, all sets in batched forward passes
    (:func:`mechrepro.techniques.patching.ablate_head_sets`)."""
    from mechrepro.techniques.patching import ablate_head_sets

    if method not in ("zero", "mean"):
        raise ValueError(f"ablation method must be 'zero' or 'mean', not {method!r}")
    if method == "mean" and means is None:
        raise ValueError("mean ablation needs the reference means (mean_head_outputs)")
    tokens = tokens.to(model.cfg.device)
    return ablate_head_sets(model, tokens, head_sets, lambda logits: per_token_loss_from_logits(logits, tokens),
                            replacement=means if method == "mean" else None)
