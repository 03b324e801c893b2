"""Zero- and mean-ablation of attention heads (Olsson et al. 2022, §"Ablations").

A head is ablated by replacing its output ``hook_z`` (before W_O) with zeros, or with its mean
over a reference batch at each position. The model is otherwise unchanged. The forward passes run
on the batched patching engine (:mod:`mechrepro.techniques.engine`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer, utils

from mechrepro.techniques import hooks
from mechrepro.techniques.engine import (
    check_tokens,
    default_memory_budget,
    final_logits,
    per_variant_bytes,
    run_suffix,
)
from mechrepro.techniques.hooks import check_head
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
    (:func:`ablate_head_sets`)."""
    if method not in ("zero", "mean"):
        raise ValueError(f"ablation method must be 'zero' or 'mean', not {method!r}")
    if method == "mean" and means is None:
        raise ValueError("mean ablation needs the reference means (mean_head_outputs)")
    tokens = tokens.to(model.cfg.device)
    return ablate_head_sets(model, tokens, head_sets, lambda logits: per_token_loss_from_logits(logits, tokens),
                            replacement=means if method == "mean" else None)


# ---------------------------------------------------------------------------------------------
# Ablating *sets* of heads at once (Olsson et al. 2022's ablations), batched the same way: each set is
# one variant on the batch dimension; a head's output z is replaced by zero or by a given value.

def ablate_head_sets(model: HookedTransformer, tokens: Tensor, head_sets: Sequence[Sequence[tuple[int, int]]],
                     metric: Callable[[Tensor], Tensor], replacement: Tensor | None = None,
                     memory_budget: int | None = None) -> list[Tensor]:
    """``metric(logits)`` (any shape) for each set of heads ablated together; an empty set is the clean run.

    ``replacement`` None zero-ablates; otherwise [layer, pos, head, d_head] values (e.g. the mean output of
    each head per position over a reference batch) replace the ablated heads' ``z``.
    """
    check_tokens(model, tokens, None)
    c = model.cfg
    masks = torch.zeros(len(head_sets), c.n_layers, c.n_heads, dtype=torch.bool)
    for i, hs in enumerate(head_sets):
        for layer, head in hs:
            check_head(model, layer, head)
            masks[i, layer, head] = True
    masks = masks[:, :, None, :].expand(-1, -1, tokens.shape[1], -1)
    return ablate_masks(model, tokens, masks, metric, replacement, memory_budget)


@torch.inference_mode()
def ablate_masks(model: HookedTransformer, tokens: Tensor, masks: Tensor, metric: Callable[[Tensor], Tensor],
                 replacement: Tensor | None = None, memory_budget: int | None = None) -> list[Tensor]:
    """``metric(logits)`` for each boolean mask [set, layer, pos, head] of head outputs ``z`` replaced (by zero,
    or by ``replacement`` [layer, pos, head, d_head]) at the positions it marks: every set one variant on the
    batch dimension, layers before the first ablated one taken from one clean run."""
    check_tokens(model, tokens, None)
    c = model.cfg
    batch, n_pos = tokens.shape
    if masks.ndim != 4 or tuple(masks.shape[1:]) != (c.n_layers, n_pos, c.n_heads):
        raise ValueError(f"masks must be [set, {c.n_layers} layers, {n_pos} positions, {c.n_heads} heads], "
                         f"got {tuple(masks.shape)}")
    if replacement is not None and replacement.shape[1] < n_pos:
        raise ValueError(f"replacement covers {replacement.shape[1]} positions, the tokens have {n_pos}")
    start = int(masks.any(dim=(0, 2, 3)).nonzero().min()) if masks.any() else c.n_layers - 1
    keep = {utils.get_act_name("resid_pre", start), "hook_pos_embed"}
    _, cache = model.run_with_cache(tokens.to(c.device), names_filter=lambda n: n in keep)
    budget = memory_budget or default_memory_budget(c.device)
    chunk = max(1, budget // per_variant_bytes(model, batch, n_pos, False))
    out: list[Tensor] = []
    for i in range(0, len(masks), chunk):
        m = masks[i:i + chunk].to(c.device)
        n = len(m)
        hooks = []
        for layer in range(start, c.n_layers):
            if not m[:, layer].any():
                continue
            sel = m[:, layer][:, None, :, :, None]  # [n 1 pos head 1]
            value = (replacement[layer, :n_pos].to(c.device) if replacement is not None
                     else torch.zeros((), device=c.device))

            def hook(z, hook, sel=sel, value=value, n=n):
                v = z.view(n, batch, *z.shape[1:])
                return torch.where(sel, value, v).view_as(z)
            hooks.append((utils.get_act_name("z", layer), hook))
        with model.hooks(fwd_hooks=hooks):
            resid = run_suffix(model, cache, start, 0, n, None, n_pos)
        logits = final_logits(model, resid, False)
        out += [metric(logits[j * batch:(j + 1) * batch]) for j in range(n)]
    return [o.cpu() for o in out]

