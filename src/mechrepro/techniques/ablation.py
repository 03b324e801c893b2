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
                 replacement: Tensor | None = None, memory_budget: int | None = None,
                 mlp_masks: Tensor | None = None, mlp_replacement: Tensor | None = None) -> list[Tensor]:
    """``metric(logits)`` for each boolean mask [set, layer, pos, head] of head outputs ``z`` replaced (by zero,
    or by ``replacement``) at the positions it marks: every set one variant on the batch dimension, layers
    before the first ablated one taken from one clean run.

    ``replacement``: [layer, pos, head, d_head] shared by the prompts (e.g. a mean over a reference batch), or
    [batch, layer, pos, head, d_head] per prompt (e.g. each prompt's corrupted counterpart). ``mlp_masks``
    [set, layer, pos] likewise replace MLP outputs, by zero or by ``mlp_replacement`` ([layer, pos, d_model]
    or [batch, layer, pos, d_model])."""
    check_tokens(model, tokens, None)
    c = model.cfg
    batch, n_pos = tokens.shape
    if masks.ndim != 4 or tuple(masks.shape[1:]) != (c.n_layers, n_pos, c.n_heads):
        raise ValueError(f"masks must be [set, {c.n_layers} layers, {n_pos} positions, {c.n_heads} heads], "
                         f"got {tuple(masks.shape)}")
    _check_replacement("replacement", replacement, batch, n_pos, 4)
    if mlp_masks is not None:
        if c.attn_only:
            raise ValueError("mlp_masks: this model is attention-only")
        if tuple(mlp_masks.shape) != (len(masks), c.n_layers, n_pos):
            raise ValueError(f"mlp_masks must be [{len(masks)} sets, {c.n_layers} layers, {n_pos} positions], "
                             f"got {tuple(mlp_masks.shape)}")
        _check_replacement("mlp_replacement", mlp_replacement, batch, n_pos, 3)
    ablated = masks.any(dim=(0, 2, 3)) | (mlp_masks.any(dim=(0, 2)) if mlp_masks is not None else False)
    start = int(ablated.nonzero().min()) if ablated.any() else c.n_layers - 1
    keep = {utils.get_act_name("resid_pre", start), "hook_pos_embed"}
    _, cache = model.run_with_cache(tokens.to(c.device), names_filter=lambda n: n in keep)
    budget = memory_budget or default_memory_budget(c.device)
    chunk = max(1, budget // per_variant_bytes(model, batch, n_pos, False))
    out: list[Tensor] = []
    for i in range(0, len(masks), chunk):
        m = masks[i:i + chunk].to(c.device)
        mm = None if mlp_masks is None else mlp_masks[i:i + chunk].to(c.device)
        n = len(m)
        hooks = []
        for layer in range(start, c.n_layers):
            if m[:, layer].any():
                hooks.append((utils.get_act_name("z", layer),
                              _replace_hook(m[:, layer][:, None, :, :, None], replacement, layer, n, batch, n_pos)))
            if mm is not None and mm[:, layer].any():
                hooks.append((utils.get_act_name("mlp_out", layer),
                              _replace_hook(mm[:, layer][:, None, :, None], mlp_replacement, layer, n, batch, n_pos)))
        with model.hooks(fwd_hooks=hooks):
            resid = run_suffix(model, cache, start, 0, n, None, n_pos)
        logits = final_logits(model, resid, False)
        out += [metric(logits[j * batch:(j + 1) * batch]) for j in range(n)]
    return [o.cpu() for o in out]


def _check_replacement(name: str, value: Tensor | None, batch: int, n_pos: int, shared_ndim: int) -> None:
    if value is None:
        return
    if value.ndim not in (shared_ndim, shared_ndim + 1):
        raise ValueError(f"{name} must have {shared_ndim} (shared) or {shared_ndim + 1} (per prompt) dimensions, "
                         f"got shape {tuple(value.shape)}")
    if value.ndim == shared_ndim + 1 and value.shape[0] != batch:
        raise ValueError(f"{name} has values for {value.shape[0]} prompts, the tokens have {batch}")
    if value.shape[-3 if shared_ndim == 4 else -2] < n_pos:
        raise ValueError(f"{name} covers {value.shape[-3 if shared_ndim == 4 else -2]} positions, "
                         f"the tokens have {n_pos}")


def _replace_hook(sel: Tensor, replacement: Tensor | None, layer: int, n: int, batch: int, n_pos: int):
    """A hook replacing the activation [n*batch pos ...] where ``sel`` [n 1 pos ...] is set, by zero or by
    the layer's slice of ``replacement`` (shared by the prompts, or per prompt)."""
    device = sel.device
    if replacement is None:
        value = torch.zeros((), device=device)
    elif replacement.ndim == sel.ndim - 1:  # shared: [layer pos ...]
        value = replacement[layer, :n_pos].to(device)
    else:  # per prompt: [batch layer pos ...]
        value = replacement[:, layer, :n_pos].to(device)

    def hook(act, hook):
        v = act.view(n, batch, *act.shape[1:])
        return torch.where(sel, value, v).view_as(act)
    return hook
