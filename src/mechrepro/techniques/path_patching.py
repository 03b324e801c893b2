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
# senders. MLPs can be senders and receivers too (Hanna et al. 2023 path-patch heads *and* MLPs): an MLP
# sender's change is its output's; an MLP receiver's input is the clean resid_mid plus the upstream changes.
# tests/test_patching.py checks it against the literal three-step procedure with hooks.

MLP = "mlp"
Receiver = tuple[int, int | str, str]  # (layer, head, "q" | "k" | "v") or (layer, "mlp", "mlp")
Sender = tuple[int, int | str]  # (layer, head) or (layer, "mlp")


def _check_receivers(model: HookedTransformer, receivers) -> list[Receiver]:
    if receivers == "logits":
        return []
    out = []
    for r in receivers:
        if len(r) == 2 and r[1] == MLP:  # (layer, "mlp"): the MLP's input
            out.append((check_index("layer", [r[0]], model.cfg.n_layers)[0], MLP, MLP))
            continue
        layer, head, kind = r
        check_index("layer", [layer], model.cfg.n_layers)
        check_index("head", [head], model.cfg.n_heads)
        if kind not in ("q", "k", "v"):
            raise ValueError(f"receiver input must be 'q', 'k' or 'v' (or a receiver (layer, 'mlp')), got {kind!r}")
        out.append((int(layer) % model.cfg.n_layers, int(head) % model.cfg.n_heads, kind))
    if not out:
        raise ValueError("receivers: give 'logits' or at least one (layer, head, 'q'|'k'|'v') or (layer, 'mlp')")
    if model.cfg.attn_only and any(h == MLP for _, h, _ in out):
        raise ValueError("an MLP receiver needs a model with MLPs (this one is attention-only)")
    return out


def _check_senders(model: HookedTransformer, senders, mlp_senders: bool) -> list[Sender]:
    c = model.cfg
    if mlp_senders and c.attn_only:
        raise ValueError("mlp_senders needs a model with MLPs (this one is attention-only)")
    if senders is None:
        per_layer = list(range(c.n_heads)) + ([MLP] if mlp_senders else [])
        return [(la, h) for la in range(c.n_layers) for h in per_layer]
    out = []
    for la, h in senders:
        la = check_index("layer", [la], c.n_layers)[0]
        if h == MLP:
            if c.attn_only:
                raise ValueError("an MLP sender needs a model with MLPs (this one is attention-only)")
            out.append((la, MLP))
        else:
            out.append((la, check_index("head", [h], c.n_heads)[0]))
    return out


def _reaches(sender: Sender, layer: int, kind: str) -> bool:
    """Whether a sender's output reaches a receiver of ``kind`` at ``layer`` (a head's q/k/v input reads the
    residual stream before its block; an MLP's, after its block's attention)."""
    s_layer, s_what = sender
    return s_layer < layer or (kind == MLP and s_what != MLP and s_layer == layer)


@torch.inference_mode()
def path_patch(model: HookedTransformer, metric: Metric, clean_tokens: Tensor, corrupted_tokens: Tensor,
               receivers="logits", senders: Sequence[tuple[int, int]] | None = None,
               sender_positions: Sequence[int] | None = None, memory_budget: int | None = None,
               last_position_only: bool = False, mlp_senders: bool = False) -> Tensor:
    """Metric when each sender (alone) is path-patched from the corrupted run to ``receivers``.

    ``receivers``: "logits", or a list of (layer, head, "q"|"k"|"v") and (layer, "mlp") inputs.
    ``senders`` None sweeps every head: the result is [layer, head] (senders not upstream of any receiver
    leave the clean metric); with ``mlp_senders`` also every MLP: [layer, head + 1], the last column being
    the layer's MLP. Otherwise ``senders`` lists (layer, head) or (layer, "mlp") and the result is
    [len(senders)]. ``sender_positions`` restricts where the senders' outputs are patched (default: every
    position). ``last_position_only``: the metric sees logits [batch, 1, vocab] of the final position only
    (far less work with a large vocabulary).
    """
    check_tokens(model, clean_tokens, corrupted_tokens)
    c = model.cfg
    recv = _check_receivers(model, receivers)
    grid = senders is None
    send = _check_senders(model, senders, mlp_senders)
    n_pos = clean_tokens.shape[1]
    pos_mask = torch.zeros(n_pos, dtype=torch.bool, device=c.device)
    pos_mask[check_index("position", sender_positions, n_pos)] = True

    out_names = {utils.get_act_name("mlp_out" if h == MLP else "z", la) for la, h in send}
    keep = out_names | {utils.get_act_name("resid_mid" if h == MLP else "resid_pre", la) for la, h, _ in recv} | {
        utils.get_act_name("resid_pre", min(la for la, _, _ in recv)) if recv else "hook_pos_embed",
        utils.get_act_name("resid_post", c.n_layers - 1), "hook_pos_embed"}
    _, clean = model.run_with_cache(clean_tokens, names_filter=lambda n: n in keep)
    _, corr = model.run_with_cache(corrupted_tokens, names_filter=lambda n: n in out_names)

    def delta(la: int, h: int | str) -> Tensor:  # [batch pos d_model]: the sender's change to the residual stream
        if h == MLP:
            name = utils.get_act_name("mlp_out", la)
            return (corr[name] - clean[name]) * pos_mask[None, :, None]
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
    if grid:
        return out.view(c.n_layers, c.n_heads + (1 if mlp_senders else 0))
    return out


def _receiver_run(model, clean, recv, part, deltas, n, batch, last_only) -> Tensor:
    """Clean run from the first receiver layer on, with each receiver's input (a head's q/k/v, an MLP's)
    replaced by the clean residual stream plus the changes of the senders that reach it."""
    c = model.cfg
    first = min(la for la, _, _ in recv)
    hooks = []
    for la, kind in sorted({(la, k) for la, _, k in recv}):
        resid = clean[utils.get_act_name("resid_mid" if kind == MLP else "resid_pre", la)]
        upstream = torch.tensor([_reaches(s, la, kind) for s in part], device=c.device)
        patched = (resid[None] + deltas * upstream[:, None, None, None]).flatten(0, 1)  # [n*batch pos d_model]
        if kind == MLP:
            def hook(act, hook, patched=patched):  # a block run on its last position alone sees that one
                return patched[:, -act.shape[1]:]
            hooks.append((f"blocks.{la}.hook_mlp_in", hook))
            continue
        heads = [h for r_la, h, k in recv if r_la == la and k == kind]

        def hook(act, hook, heads=heads, patched=patched):
            act[:, :, heads] = patched[:, -act.shape[1]:, None]
            return act
        hooks.append((f"blocks.{la}.hook_{kind}_input", hook))
    split, mlp_in = c.use_split_qkv_input, c.use_hook_mlp_in
    model.set_use_split_qkv_input(True)
    if any(k == MLP for _, _, k in recv):
        model.set_use_hook_mlp_in(True)
    try:
        with model.hooks(fwd_hooks=hooks):
            resid = run_suffix(model, clean, first, 0, n, None, clean[utils.get_act_name("resid_pre", first)].shape[1],
                                last_only)
    finally:
        model.set_use_split_qkv_input(split)
        if mlp_in != c.use_hook_mlp_in:
            model.set_use_hook_mlp_in(mlp_in)
    return final_logits(model, resid, last_only)


