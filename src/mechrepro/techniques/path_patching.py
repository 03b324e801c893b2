"""Path patching (Wang et al. 2022 §3.1; Goldowsky-Dill et al. 2023), batched over sender heads."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from transformer_lens import HookedTransformer, utils

from mechrepro.techniques.engine import (
    Metric,
    check_index,
    check_tokens,
    checked,
    default_memory_budget,
    final_logits,
    metrics_per_variant,
    per_variant_bytes,
    run_suffix,
)

# ---------------------------------------------------------------------------------------------
# Path patching (Wang et al. 2022 §3.1; Goldowsky-Dill et al. 2023): the sender heads' outputs come
# from the corrupted run, every other component is frozen at its clean value, and the effect reaches
# the model only through the receivers -- the logits, or the query / key / value inputs of given heads.
# With everything else frozen, a receiver's input is the clean residual stream plus the sender's
# change in output, ΔzW_O (the residual stream is a sum); that is what is computed here, batched over
# senders. tests/test_patching.py checks it against the literal three-step procedure with hooks.

Receiver = tuple[int, int, str]  # (layer, head, "q" | "k" | "v")


def _check_receivers(model: HookedTransformer, receivers) -> list[Receiver]:
    if receivers == "logits":
        return []
    out = []
    for layer, head, kind in receivers:
        check_index("layer", [layer], model.cfg.n_layers)
        check_index("head", [head], model.cfg.n_heads)
        if kind not in ("q", "k", "v"):
            raise ValueError(f"receiver input must be 'q', 'k' or 'v', got {kind!r}")
        out.append((int(layer) % model.cfg.n_layers, int(head) % model.cfg.n_heads, kind))
    if not out:
        raise ValueError("receivers: give 'logits' or at least one (layer, head, 'q'|'k'|'v')")
    return out


@torch.inference_mode()
def path_patch(model: HookedTransformer, metric: Metric, clean_tokens: Tensor, corrupted_tokens: Tensor,
               receivers="logits", senders: Sequence[tuple[int, int]] | None = None,
               sender_positions: Sequence[int] | None = None, memory_budget: int | None = None,
               last_position_only: bool = False) -> Tensor:
    """Metric when each sender head (alone) is path-patched from the corrupted run to ``receivers``.

    ``senders`` None sweeps every head: the result is [layer, head] (heads not upstream of any receiver
    leave the clean metric). Otherwise [len(senders)]. ``sender_positions`` restricts where the
    senders' outputs are patched (default: every position). ``last_position_only``: the metric sees logits
    [batch, 1, vocab] of the final position only (far less work with a large vocabulary).
    """
    check_tokens(model, clean_tokens, corrupted_tokens)
    c = model.cfg
    recv = _check_receivers(model, receivers)
    grid = senders is None
    send = [(la, h) for la in range(c.n_layers) for h in range(c.n_heads)] if grid else [
        (check_index("layer", [la], c.n_layers)[0], check_index("head", [h], c.n_heads)[0]) for la, h in senders]
    n_pos = clean_tokens.shape[1]
    pos_mask = torch.zeros(n_pos, dtype=torch.bool, device=c.device)
    pos_mask[check_index("position", sender_positions, n_pos)] = True

    z_names = {utils.get_act_name("z", la) for la, _ in send}
    recv_layers = sorted({la for la, _, _ in recv})
    keep = z_names | {utils.get_act_name("resid_pre", la) for la in recv_layers} | {
        utils.get_act_name("resid_post", c.n_layers - 1), "hook_pos_embed"}
    _, clean = model.run_with_cache(clean_tokens, names_filter=lambda n: n in keep)
    _, corr = model.run_with_cache(corrupted_tokens, names_filter=lambda n: n in z_names)

    def delta(la: int, h: int) -> Tensor:  # [batch pos d_model]: the sender's change to the residual stream
        name = utils.get_act_name("z", la)
        dz = (corr[name][:, :, h] - clean[name][:, :, h]) * pos_mask[None, :, None]
        return dz @ model.W_O[la, h]

    batch = clean_tokens.shape[0]
    budget = memory_budget or default_memory_budget(c.device)
    chunk = max(1, budget // per_variant_bytes(model, batch, n_pos, last_position_only))
    out = torch.empty(len(send), device=c.device)
    for i in range(0, len(send), chunk):
        part = send[i:i + chunk]
        n = len(part)
        deltas = torch.stack([delta(la, h) for la, h in part])  # [n batch pos d_model]
        if not recv:
            resid = clean[utils.get_act_name("resid_post", c.n_layers - 1)][None] + deltas
            logits = final_logits(model, resid.flatten(0, 1), last_position_only)
        else:
            logits = _receiver_run(model, clean, recv, part, deltas, n, batch, last_position_only)
        out[i:i + n] = metrics_per_variant(metric, logits, n, batch)
    out = checked(out.cpu(), "path patching")
    return out.view(c.n_layers, c.n_heads) if grid else out


def _receiver_run(model, clean, recv, part, deltas, n, batch, last_only) -> Tensor:
    """Clean run from the first receiver layer on, with each receiver's q/k/v input replaced by the clean
    residual stream plus the sender's change (senders at or after a receiver's layer do not reach it)."""
    c = model.cfg
    first = min(la for la, _, _ in recv)
    hooks = []
    for la in sorted({la for la, _, _ in recv}):
        resid = clean[utils.get_act_name("resid_pre", la)]
        upstream = torch.tensor([s_la < la for s_la, _ in part], device=c.device)
        patched = (resid[None] + deltas * upstream[:, None, None, None]).flatten(0, 1)  # [n*batch pos d_model]
        for kind in ("q", "k", "v"):
            heads = [h for r_la, h, k in recv if r_la == la and k == kind]
            if heads:
                def hook(act, hook, heads=heads, patched=patched):
                    act[:, :, heads] = patched[:, :, None]
                    return act
                hooks.append((f"blocks.{la}.hook_{kind}_input", hook))
    split = c.use_split_qkv_input
    model.set_use_split_qkv_input(True)
    try:
        with model.hooks(fwd_hooks=hooks):
            resid = run_suffix(model, clean, first, 0, n, None, clean[utils.get_act_name("resid_pre", first)].shape[1],
                                last_only)
    finally:
        model.set_use_split_qkv_input(split)
    return final_logits(model, resid, last_only)


