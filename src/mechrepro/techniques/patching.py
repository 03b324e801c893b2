"""Batched activation patching: one engine for every sweep of the IOI, Greater-Than and induction work.

Activation patching (Meng et al. 2022; Wang et al. 2022 §3; Heimersheim & Nanda 2024, *How to use
and interpret activation patching*): run the model on a *base* input while replacing one activation
with its value from a *source* run (or with zero / its mean / another prompt's value), and read a
metric of the logits. ``clean_to_corrupted`` (TransformerLens's convention, "denoising") runs the
corrupted prompts and patches in clean activations; ``corrupted_to_clean`` ("noising") the reverse.

TransformerLens's ``patching`` module runs one hooked forward pass per patched index. Here:

* many patched variants are stacked on the batch dimension and run together, in chunks sized by a
  memory budget, under ``torch.inference_mode()``;
* only the hooks a sweep needs are cached;
* a variant patching layer L starts from the base run's cached residual stream at layer L
  (``start_at_layer``), so layers before the patch are not recomputed;
* the metric stays on the device; there is one device sync per sweep.

Results have TransformerLens's shapes (e.g. ``head_by_pos``: [layer, pos, head]) and equal its
``get_act_patch_*`` functions to float precision (tests/test_patching.py).
"""


from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from transformer_lens import HookedTransformer, utils

from mechrepro.techniques.engine import (
    Metric,
    check_index,
    check_tokens,
    checked,
    default_memory_budget,
    extend_kv,
    final_logits,
    metrics_per_variant,
    one_query_block,
    per_variant_bytes,
    run_suffix,
    simple_attention,
)


@dataclass(frozen=True)
class Sweep:
    """A family of patches: the activation (TransformerLens name) and the axes indexed after ``layer``."""

    act: str  # resid_pre, resid_mid, attn_out, mlp_out, z, q, k, v, pattern
    axes: tuple[str, ...]  # in TransformerLens's order: () / ("pos",) / ("head",) / ("pos", "head") / ("head", "pos")
    reference: str | None  # the TransformerLens function computing the same sweep


SWEEPS: dict[str, Sweep] = {
    "resid_pre": Sweep("resid_pre", ("pos",), "get_act_patch_resid_pre"),
    "resid_mid": Sweep("resid_mid", ("pos",), "get_act_patch_resid_mid"),
    "attn_out": Sweep("attn_out", ("pos",), "get_act_patch_attn_out"),
    "mlp_out": Sweep("mlp_out", ("pos",), "get_act_patch_mlp_out"),
    "attn_out_all_pos": Sweep("attn_out", (), None),
    "mlp_out_all_pos": Sweep("mlp_out", (), None),
    "head_all_pos": Sweep("z", ("head",), "get_act_patch_attn_head_out_all_pos"),
    "head_by_pos": Sweep("z", ("pos", "head"), "get_act_patch_attn_head_out_by_pos"),
    "q_all_pos": Sweep("q", ("head",), "get_act_patch_attn_head_q_all_pos"),
    "k_all_pos": Sweep("k", ("head",), "get_act_patch_attn_head_k_all_pos"),
    "v_all_pos": Sweep("v", ("head",), "get_act_patch_attn_head_v_all_pos"),
    "q_by_pos": Sweep("q", ("pos", "head"), "get_act_patch_attn_head_q_by_pos"),
    "k_by_pos": Sweep("k", ("pos", "head"), "get_act_patch_attn_head_k_by_pos"),
    "v_by_pos": Sweep("v", ("pos", "head"), "get_act_patch_attn_head_v_by_pos"),
    "pattern_all_pos": Sweep("pattern", ("head",), "get_act_patch_attn_head_pattern_all_pos"),
    "pattern_by_pos": Sweep("pattern", ("head", "pos"), "get_act_patch_attn_head_pattern_by_pos"),
}
# TransformerLens's "every" sweeps: output, q, k, v, pattern stacked
EVERY = {"head_all_pos_every": ("head_all_pos", "q_all_pos", "k_all_pos", "v_all_pos", "pattern_all_pos"),
         "head_by_pos_every": ("head_by_pos", "q_by_pos", "k_by_pos", "v_by_pos", "pattern_by_pos")}
DIRECTIONS = ("clean_to_corrupted", "corrupted_to_clean")
ABLATIONS = ("zero", "mean", "resample")




def sweep_spec(kind: str, model: HookedTransformer) -> Sweep:
    if kind not in SWEEPS:
        raise ValueError(f"unknown sweep {kind!r}; known: {', '.join(SWEEPS)}")
    s = SWEEPS[kind]
    if s.act in ("mlp_out", "resid_mid") and model.cfg.attn_only:
        raise ValueError(f"sweep {kind!r} needs MLPs; this model is attention-only")
    return s




def _variants(s: Sweep, layers: list[int], positions: list[int], heads: list[int]) -> list[tuple[int, ...]]:
    """Index tuples (layer, *axes) in output order."""
    ranges = {"pos": positions, "head": heads}
    out: list[tuple[int, ...]] = [(layer,) for layer in layers]
    for ax in s.axes:
        out = [(*t, v) for t in out for v in ranges[ax]]
    return out


def _mask(s: Sweep, idx: list[tuple[int, ...]], shape: tuple[int, ...], device) -> Tensor:
    """Boolean [n_variants, 1, ...] marking, per variant, the entries of the activation (shape without
    batch) that are patched."""
    m = torch.zeros((len(idx), 1, *shape), dtype=torch.bool, device=device)
    for i, t in enumerate(idx):
        ax = dict(zip(s.axes, t[1:], strict=True))
        if s.act == "pattern":  # [head, dest, src]
            m[i, 0, ax["head"], ax.get("pos", slice(None))] = True
        elif s.act in ("z", "q", "k", "v"):  # [pos, head, d_head]
            m[i, 0, ax.get("pos", slice(None)), ax["head"]] = True
        else:  # [pos, d_model]
            m[i, 0, ax.get("pos", slice(None))] = True
    return m


def _ablation_source(base: Tensor, kind: str, seed: int) -> Tensor:
    if kind == "zero":
        return torch.zeros_like(base)
    if kind == "mean":
        return base.mean(0, keepdim=True).expand_as(base)
    if base.shape[0] < 2:
        raise ValueError("resample ablation needs at least two prompts (it takes another prompt's activation)")
    g = torch.Generator().manual_seed(seed)
    shift = 1 + torch.randperm(base.shape[0] - 1, generator=g)[0].item()  # a derangement: no prompt keeps its own
    return base.roll(int(shift), dims=0)




def base_and_source(model, clean_tokens, corrupted_tokens, direction, ablation):
    if ablation is not None:
        if ablation not in ABLATIONS:
            raise ValueError(f"ablation must be one of {ABLATIONS}, got {ablation!r}")
        return clean_tokens, None
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if corrupted_tokens is None:
        raise ValueError("activation patching needs corrupted_tokens (or an ablation: zero / mean / resample)")
    return (corrupted_tokens, clean_tokens) if direction == "clean_to_corrupted" else (clean_tokens, corrupted_tokens)




@torch.inference_mode()
def patch_sweep(model: HookedTransformer, kind: str, metric: Metric, clean_tokens: Tensor,
                corrupted_tokens: Tensor | None = None, *, direction: str = "clean_to_corrupted",
                ablation: str | None = None, layers: Sequence[int] | None = None,
                positions: Sequence[int] | None = None, heads: Sequence[int] | None = None,
                last_position_only: bool = False, memory_budget: int | None = None, seed: int = 0,
                progress: bool = False) -> Tensor:
    """Metric of the patched model for every index of sweep ``kind`` (see :data:`SWEEPS`).

    ``ablation`` ("zero", "mean" over the prompts, "resample": another prompt's value) replaces the
    activations of the clean run instead of patching between two runs. ``layers`` / ``positions`` /
    ``heads`` restrict the sweep (the result's axes then follow those lists). ``last_position_only``
    unembeds only the final position (the metric then sees logits [batch, 1, vocab]): much less memory
    for metrics that read the last token. Returns a CPU tensor shaped [layer, *axes].
    """
    from tqdm.auto import tqdm

    s = sweep_spec(kind, model)
    check_tokens(model, clean_tokens, corrupted_tokens)
    base_tokens, source_tokens = base_and_source(model, clean_tokens, corrupted_tokens, direction, ablation)
    c, (batch, n_pos) = model.cfg, clean_tokens.shape
    layers_ = check_index("layer", layers, c.n_layers)
    positions_ = check_index("position", positions, n_pos)
    heads_ = check_index("head", heads, c.n_heads)
    device = c.device

    names = {layer: utils.get_act_name(s.act, layer) for layer in layers_}
    first = min(layers_)
    keep = {utils.get_act_name(a, la) for la in range(first, c.n_layers) for a in ("resid_pre", "resid_post", "k", "v")}
    keep |= {"hook_pos_embed"} | (set(names.values()) if ablation is not None else set())
    if ablation is None:  # the base and the source run as one batch
        both = torch.cat([base_tokens, source_tokens]).to(device)
        keep |= set(names.values())
        logits, cache = model.run_with_cache(both, names_filter=lambda n: n in keep)
        base_logits, base_cache = logits[:batch], {k: v[:batch] for k, v in cache.items()}
        sources = {layer: cache[names[layer]][batch:] for layer in layers_}
    else:
        base_logits, base_cache = model.run_with_cache(base_tokens.to(device), names_filter=lambda n: n in keep)
        sources = {layer: _ablation_source(base_cache[names[layer]], ablation, seed) for layer in layers_}

    # Causal attention: a patch at position p leaves every position before p as in the base run, at every
    # layer. So variants are grouped by (layer, p) and only positions p.. are recomputed, attending to the
    # base run's cached keys and values for the positions before p. A *local* patch (head output, query,
    # pattern row, attention / MLP output, resid_mid at p) changes nothing but position p in its own layer,
    # so that layer runs on position p alone.
    variants = _variants(s, layers_, positions_, heads_)
    groups: dict[tuple[int, int | None], list[int]] = {}
    for i, v in enumerate(variants):
        groups.setdefault((v[0], dict(zip(s.axes, v[1:], strict=True)).get("pos")), []).append(i)
    out = torch.empty(len(variants), device=device)
    budget = memory_budget or default_memory_budget(device)
    chunk = max(1, budget // per_variant_bytes(model, batch, n_pos, last_position_only))
    bar = tqdm(total=len(variants), desc=f"patch {kind}", disable=not progress, mininterval=1.0)
    if last_position_only and s.act in LOCAL and s.act != "pattern" and "pos" in s.axes and simple_attention(c):
        # Every position of a layer in one batch: each variant's query attends to the base keys before its p.
        by_layer: dict[int, list[int]] = {}
        for i, v in enumerate(variants):
            by_layer.setdefault(v[0], []).append(i)
        groups = {}
        for layer, members in by_layer.items():
            if layer == c.n_layers - 1:  # a final-layer patch before the last position never reaches it
                untouched = [i for i in members if variants[i][1 + s.axes.index("pos")] != n_pos - 1]
                if untouched:
                    out[untouched] = metric(base_logits[:, -1:])
                    bar.update(len(untouched))
                members = sorted(set(members) - set(untouched))
            for i in range(0, len(members), chunk):
                ids = members[i:i + chunk]
                axes = [dict(zip(s.axes, variants[j][1:], strict=True)) for j in ids]
                resid = _run_local_by_pos(model, s, layer, sources[layer], base_cache, axes, n_pos)
                out[ids] = metrics_per_variant(metric, final_logits(model, resid, True), len(ids), batch)
                bar.update(len(ids))
    for (layer, pos), members in groups.items():
        p = pos or 0
        width = 1 if pos is not None and s.act in LOCAL else None
        for i in range(0, len(members), chunk):
            ids = members[i:i + chunk]
            n = len(ids)
            mask, src = _window(s, _mask(s, [variants[j] for j in ids], tuple(sources[layer].shape[1:]), device),
                                sources[layer], p, width)

            def hook(act, hook, mask=mask, src=src, n=n):
                v = act.view(n, batch, *act.shape[1:])
                return torch.where(mask, src.unsqueeze(0), v).view_as(act)

            with model.hooks(fwd_hooks=[(names[layer], hook)]):
                resid = run_suffix(model, base_cache, layer, p, n, width, n_pos, last_position_only)
            logits = final_logits(model, resid, last_position_only)
            if p > 0 and not last_position_only:  # positions before p: the base run's logits
                logits = torch.cat([base_logits[:, :p].repeat(n, 1, 1), logits], dim=1)
            out[ids] = metrics_per_variant(metric, logits, n, batch)
            bar.update(n)
    bar.close()
    shape = [len(layers_)] + [len({"pos": positions_, "head": heads_}[ax]) for ax in s.axes]
    return checked(out.cpu(), f"patch sweep {kind!r}").view(shape)




def _run_local_by_pos(model: HookedTransformer, s: Sweep, layer: int, source: Tensor, base_cache,
                      axes: list[dict[str, int]], n_pos: int) -> Tensor:
    """Final residual stream at the last position [n*batch, 1, d_model] for ``n`` local patches of block
    ``layer``, each at its own position p (and head), run together.

    Block ``layer`` runs one query per variant, at p, against the base run's keys and values before p
    (shared by all variants, never copied). Only the residual stream at p leaves the block changed. If the
    next block is the last, it runs the last position's query alone, on the base keys and values with
    position p recomputed; deeper models run the later blocks on every position."""
    c, end = model.cfg, n_pos - 1
    n = len(axes)
    dev = source.device
    P = torch.tensor([a["pos"] for a in axes], device=dev)
    src = source[:, P].transpose(0, 1).contiguous()  # [n b ...]
    if "head" in axes[0]:
        sel = torch.zeros(n, 1, c.n_heads, 1, dtype=torch.bool, device=dev)
        sel[torch.arange(n, device=dev), 0, [a["head"] for a in axes]] = True
    else:
        sel = torch.ones((), dtype=torch.bool, device=dev)

    def patch(name: str, act: Tensor) -> Tensor:
        return torch.where(sel, src, act) if name == s.act else act

    kv = [base_cache[utils.get_act_name(a, layer)] for a in ("k", "v")]
    visible = torch.arange(n_pos, device=dev)[None] < P[:, None]  # [n key]: keys before p
    resid = base_cache[utils.get_act_name("resid_pre", layer)][:, P].transpose(0, 1).contiguous()  # [n b d]
    new = one_query_block(model.blocks[layer], resid, kv[0], kv[1], visible, patch)
    post = base_cache[utils.get_act_name("resid_post", layer)]
    at_end = (P == end)[:, None, None]
    if layer == c.n_layers - 1:
        return torch.where(at_end, new, post[None, :, end]).flatten(0, 1)[:, None]
    if layer == c.n_layers - 2:
        block = model.blocks[layer + 1]
        k_new, v_new = extend_kv(block, new, None, None)  # [n b head d_head]: keys/values at p
        kv = [base_cache[utils.get_act_name(a, layer + 1)][:, :end] for a in ("k", "v")]
        query = torch.where(at_end, new, post[None, :, end])
        out = one_query_block(block, query, kv[0], kv[1], None, None, (P, k_new, v_new))
        return out.flatten(0, 1)[:, None]
    full = post.unsqueeze(0).repeat(n, 1, 1, 1)  # [n b pos d]
    full[torch.arange(n, device=dev), :, P] = new
    return run_suffix(model, base_cache, layer + 1, 0, n, None, n_pos, True, resid=full.flatten(0, 1))




LOCAL = ("z", "q", "pattern", "attn_out", "mlp_out", "resid_mid")


def _window(s: Sweep, mask: Tensor, src: Tensor, p: int, width: int | None) -> tuple[Tensor, Tensor]:
    """Mask [n 1 ...] and source [batch ...] restricted to positions p..p+width (or p.. to the end); for a
    pattern, the query axis, and the key axis to what those queries see."""
    if p == 0 and width is None:
        return mask, src
    q = slice(p, None if width is None else p + width)
    if s.act == "pattern":  # [.., head, dest, src]
        k = slice(0, None if width is None else p + width)
        return mask[:, :, :, q, k], src[:, :, q, k]
    return mask[:, :, q], src[:, q]




def patch_every(model: HookedTransformer, kind: str, metric: Metric, clean_tokens: Tensor,
                corrupted_tokens: Tensor | None = None, **kw) -> Tensor:
    """TransformerLens's ``*_every`` sweeps: head output, q, k, v and pattern results stacked [5, ...]
    (``head_all_pos_every``: [5, layer, head]; ``head_by_pos_every``: [5, layer, pos, head])."""
    if kind not in EVERY:
        raise ValueError(f"unknown 'every' sweep {kind!r}; known: {', '.join(EVERY)}")
    parts = [patch_sweep(model, k, metric, clean_tokens, corrupted_tokens, **kw) for k in EVERY[kind]]
    if kind == "head_by_pos_every":  # pattern_by_pos is [layer, head, pos]: TransformerLens stacks it as such
        parts[-1] = parts[-1].transpose(1, 2)
    return torch.stack(parts)


def reference_sweep(model: HookedTransformer, kind: str, metric: Metric, clean_tokens: Tensor,
                    corrupted_tokens: Tensor) -> Tensor:
    """The same sweep computed by TransformerLens's own ``patching`` module (one pass per index)."""
    from transformer_lens import patching as tl_patching

    s = sweep_spec(kind, model)
    if s.reference is None:
        raise ValueError(f"TransformerLens has no reference function for sweep {kind!r}")
    _, clean_cache = model.run_with_cache(clean_tokens)
    return getattr(tl_patching, s.reference)(model, corrupted_tokens, clean_cache, metric)


