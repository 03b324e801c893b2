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

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from transformer_lens import HookedTransformer, utils
from transformer_lens.cache.key_value_cache_entry import TransformerLensKeyValueCacheEntry

from mechrepro.techniques.hooks import check_head

Metric = Callable[[Tensor], Tensor]  # logits [batch pos vocab] -> scalar tensor


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


def _check_tokens(model: HookedTransformer, clean: Tensor, corrupted: Tensor | None) -> None:
    if clean.ndim != 2:
        raise ValueError(f"tokens must be [batch, pos], got shape {tuple(clean.shape)}")
    if corrupted is not None and corrupted.shape != clean.shape:
        raise ValueError(f"clean and corrupted tokens differ in shape: {tuple(clean.shape)} vs "
                         f"{tuple(corrupted.shape)} (patching needs prompts of equal length, position by position)")
    if clean.shape[1] > model.cfg.n_ctx:
        raise ValueError(f"{clean.shape[1]} tokens exceed the model's context of {model.cfg.n_ctx}")


def _check_index(name: str, values: Sequence[int] | None, size: int) -> list[int]:
    if values is None:
        return list(range(size))
    out = []
    for v in values:
        if not -size <= int(v) < size:
            raise ValueError(f"{name} {v} is out of range: the model has {size} ({name}s 0..{size - 1})")
        out.append(int(v) % size)
    return out


def _sweep(kind: str, model: HookedTransformer) -> Sweep:
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


def default_memory_budget(device) -> int:
    """Bytes a chunk of patched variants may use: 1 GiB on CPU, a third of the free memory on a GPU."""
    if torch.device(device).type == "cuda":
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free / 3)
    return 1 << 30


def _per_variant_bytes(model: HookedTransformer, batch: int, pos: int, last_only: bool) -> int:
    c = model.cfg
    width = 6 * c.d_model + (c.d_mlp or 0) * 2 + 3 * c.n_heads * pos + (c.d_vocab // pos if last_only else c.d_vocab)
    return batch * pos * width * 4


def _final_logits(model: HookedTransformer, resid: Tensor, last_only: bool) -> Tensor:
    if last_only:
        resid = resid[:, -1:]
    if model.cfg.normalization_type is not None:
        resid = model.ln_final(resid)
    return model.unembed(resid)


def _checked(values: Tensor, what: str) -> Tensor:
    bad = ~torch.isfinite(values)
    if bad.any():
        raise ValueError(f"{what}: the metric returned NaN or inf for {int(bad.sum())} of {values.numel()} "
                         f"entries (first at flat index {int(bad.flatten().nonzero()[0])})")
    return values


def _runs(model, clean_tokens, corrupted_tokens, direction, ablation):
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

    s = _sweep(kind, model)
    _check_tokens(model, clean_tokens, corrupted_tokens)
    base_tokens, source_tokens = _runs(model, clean_tokens, corrupted_tokens, direction, ablation)
    c, (batch, n_pos) = model.cfg, clean_tokens.shape
    layers_ = _check_index("layer", layers, c.n_layers)
    positions_ = _check_index("position", positions, n_pos)
    heads_ = _check_index("head", heads, c.n_heads)
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
    chunk = max(1, budget // _per_variant_bytes(model, batch, n_pos, last_position_only))
    bar = tqdm(total=len(variants), desc=f"patch {kind}", disable=not progress, mininterval=1.0)
    if last_position_only and s.act in LOCAL and s.act != "pattern" and "pos" in s.axes and _simple_attention(c):
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
                out[ids] = _metrics(metric, _final_logits(model, resid, True), len(ids), batch)
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
                resid = _run_suffix(model, base_cache, layer, p, n, width, n_pos, last_position_only)
            logits = _final_logits(model, resid, last_position_only)
            if p > 0 and not last_position_only:  # positions before p: the base run's logits
                logits = torch.cat([base_logits[:, :p].repeat(n, 1, 1), logits], dim=1)
            out[ids] = _metrics(metric, logits, n, batch)
            bar.update(n)
    bar.close()
    shape = [len(layers_)] + [len({"pos": positions_, "head": heads_}[ax]) for ax in s.axes]
    return _checked(out.cpu(), f"patch sweep {kind!r}").view(shape)


def _metrics(metric: Metric, logits: Tensor, n: int, batch: int) -> Tensor:
    """``metric`` of each of the ``n`` variants stacked in ``logits`` [n*batch, ...]: vectorised with
    ``torch.vmap`` when the metric allows it (pure tensor code), one call per variant otherwise."""
    stacked = logits.view(n, batch, *logits.shape[1:])
    try:
        values = torch.vmap(metric)(stacked)
        if values.shape == (n,):
            return values
    except Exception:  # noqa: BLE001 -- a metric vmap cannot trace (e.g. it calls .item()): call it per variant
        pass
    return torch.stack([metric(stacked[j]) for j in range(n)])


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
    new = _one_query_block(model.blocks[layer], resid, kv[0], kv[1], visible, patch)
    post = base_cache[utils.get_act_name("resid_post", layer)]
    at_end = (P == end)[:, None, None]
    if layer == c.n_layers - 1:
        return torch.where(at_end, new, post[None, :, end]).flatten(0, 1)[:, None]
    if layer == c.n_layers - 2:
        block = model.blocks[layer + 1]
        k_new, v_new = _extend_kv(block, new, None, None)  # [n b head d_head]: keys/values at p
        kv = [base_cache[utils.get_act_name(a, layer + 1)][:, :end] for a in ("k", "v")]
        query = torch.where(at_end, new, post[None, :, end])
        out = _one_query_block(block, query, kv[0], kv[1], None, None, (P, k_new, v_new))
        return out.flatten(0, 1)[:, None]
    full = post.unsqueeze(0).repeat(n, 1, 1, 1)  # [n b pos d]
    full[torch.arange(n, device=dev), :, P] = new
    return _run_suffix(model, base_cache, layer + 1, 0, n, None, n_pos, True, resid=full.flatten(0, 1))


def _simple_attention(cfg) -> bool:
    """Configurations whose blocks :func:`_one_query_block` reproduces: pre-norm, learned absolute positions,
    plain causal softmax attention (no soft-cap, sinks, grouped keys, local windows or QK-norm)."""
    from transformer_lens.utilities.activation_functions import softcap_enabled

    return (_plain_block(cfg) and cfg.positional_embedding_type == "standard" and cfg.attention_dir == "causal"
            and not (cfg.use_attn_result or cfg.use_local_attn or cfg.use_attention_sinks or cfg.use_logn_attn
                     or cfg.use_qk_norm or cfg.load_in_4bit or cfg.parallel_attn_mlp
                     or cfg.use_normalization_before_and_after or cfg.use_hook_mlp_in)
            and cfg.n_key_value_heads is None and cfg.clip_qkv is None
            and not softcap_enabled(cfg.attn_scores_soft_cap))


def _one_query_block(block, resid: Tensor, keys: Tensor, values: Tensor, visible: Tensor | None,
                     patch: Callable[[str, Tensor], Tensor] | None,
                     replace: tuple[Tensor, Tensor, Tensor] | None = None) -> Tensor:
    """One transformer block for one query per (variant, prompt): ``resid`` [n b d_model] attends to the
    shared base ``keys``/``values`` [b key head d_head] (``visible`` [n key] selects them per variant) and
    to its own key and value. ``replace`` = (positions [n], keys, values [n b head d_head]) swaps one base
    key/value per variant. ``patch(act_name, act)`` may replace q, z, attn_out, resid_mid or mlp_out on the
    way. The same arithmetic as TransformerLens's block (checked against it in tests/test_patching.py)."""
    attn, patch = block.attn, patch or (lambda name, act: act)
    x = block.ln1(resid)
    q, k_self, v_self = attn.calculate_qkv_matrices(x, x, x)  # [n b head d_head]
    q = patch("q", q)
    scores = torch.einsum("nbhd,bjhd->nbhj", q, keys)
    if replace is not None:  # one key/value per variant differs from the base: correct its score and value
        pos, k_rep, v_rep = replace
        inner = pos < keys.shape[1]
        idx = pos.clamp(max=keys.shape[1] - 1)
        onehot = (torch.nn.functional.one_hot(idx, keys.shape[1]) * inner[:, None]).to(q.dtype)  # [n key]
        rows = torch.arange(keys.shape[0], device=keys.device)[None, :]
        scores = scores + onehot[:, None, None] * (q * (k_rep - keys[rows, idx[:, None]])).sum(-1, keepdim=True)
    if visible is not None:
        scores = scores.masked_fill(~visible[:, None, None, :], float("-inf"))
    scores = torch.cat([scores, (q * k_self).sum(-1, keepdim=True)], dim=-1) / attn.attn_scale
    pattern = torch.softmax(scores, dim=-1)
    z = torch.einsum("nbhj,bjhd->nbhd", pattern[..., :-1], values) + pattern[..., -1:] * v_self
    if replace is not None:
        z = z + (pattern[..., :-1] * onehot[:, None, None]).sum(-1, keepdim=True) * (v_rep - values[rows, idx[:, None]])
    z = patch("z", z)
    w = attn.W_O.flatten(0, 1)  # [(head d_head) d_model]
    attn_out = patch("attn_out", z.flatten(-2) @ w + attn.b_O)
    if block.cfg.attn_only:
        return resid + attn_out
    resid_mid = patch("resid_mid", resid + attn_out)
    mlp_out = patch("mlp_out", block.mlp(block.ln2(resid_mid)))
    return resid_mid + mlp_out


# Activations whose patch at position p changes only position p of their layer's output.
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


def _run_suffix(model: HookedTransformer, base_cache, layer: int, p: int, n: int, width: int | None,
                n_pos: int, last_only: bool = False, resid: Tensor | None = None) -> Tensor:
    """Blocks ``layer``.. on positions p.. of ``n`` copies of the base run (keys and values of earlier
    positions from its cache); with ``width`` 1, block ``layer`` runs on position p alone and the later
    positions enter the next block unchanged. With ``last_only`` the final block (when it is not the
    patched one) computes only the keys and values of the other positions and the whole block for the last.
    ``resid`` replaces the base run's input to block ``layer``.
    Returns the final residual stream [n*batch, positions computed, d_model]."""
    c = model.cfg
    end = n_pos if width is None else p + width
    if resid is None:
        resid = base_cache[utils.get_act_name("resid_pre", layer)][:, p:end].repeat(n, 1, 1)
    for i in range(layer, c.n_layers):
        past = None
        if p > 0:
            past = (base_cache[utils.get_act_name("k", i)][:, :p].repeat(n, 1, 1, 1),
                    base_cache[utils.get_act_name("v", i)][:, :p].repeat(n, 1, 1, 1))
        pos_embed = None
        if c.positional_embedding_type == "shortformer":
            pos_embed = base_cache["hook_pos_embed"][:, p:p + resid.shape[1]].repeat(n, 1, 1)
        if last_only and i == c.n_layers - 1 and i > layer and resid.shape[1] > 1 and _plain_block(c):
            # Only the last position's output is read. Its keys and values: recomputed where the residual
            # changed -- right after a local patch, position p alone; the base run's elsewhere.
            changed = 1 if (i == layer + 1 and width == 1) else resid.shape[1] - 1
            past = _extend_kv(model.blocks[i], resid[:, :changed],
                              None if pos_embed is None else pos_embed[:, :changed], past)
            if changed < resid.shape[1] - 1:
                k, v = (base_cache[utils.get_act_name(a, i)][:, p + changed:n_pos - 1].repeat(n, 1, 1, 1)
                        for a in ("k", "v"))
                past = (torch.cat([past[0], k], dim=1), torch.cat([past[1], v], dim=1))
            resid, pos_embed = resid[:, -1:], None if pos_embed is None else pos_embed[:, -1:]
        entry = None
        if past is not None:
            entry = TransformerLensKeyValueCacheEntry(past_keys=past[0], past_values=past[1], frozen=True)
        resid = model.blocks[i](resid, past_kv_cache_entry=entry, shortformer_pos_embed=pos_embed)
        if i == layer and end < n_pos:  # positions after a local patch leave this block as in the base run
            rest = base_cache[utils.get_act_name("resid_post", i)][:, end:]
            resid = torch.cat([resid, rest.repeat(n, 1, 1)], dim=1)
    return resid


def _plain_block(cfg) -> bool:
    """Pre-norm blocks with learned or shortformer positions: where :func:`_extend_kv` reproduces the keys
    and values exactly as the block computes them."""
    return (cfg.positional_embedding_type in ("standard", "shortformer") and not cfg.use_attn_in
            and not cfg.use_split_qkv_input and cfg.original_architecture not in _POST_NORM)


_POST_NORM = ("OlmoeForCausalLM", "Olmo2ForCausalLM", "Olmo3ForCausalLM")


def _extend_kv(block, resid: Tensor, pos_embed: Tensor | None, past: tuple[Tensor, Tensor] | None
               ) -> tuple[Tensor, Tensor]:
    """The block's keys and values for ``resid``'s positions (as its forward computes them), after ``past``."""
    x = block.ln1(resid)
    kq = x + (0.0 if pos_embed is None else pos_embed)
    _, k, v = block.attn.calculate_qkv_matrices(kq, kq, x)
    if past is None:
        return k, v
    return torch.cat([past[0], k], dim=1), torch.cat([past[1], v], dim=1)


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

    s = _sweep(kind, model)
    if s.reference is None:
        raise ValueError(f"TransformerLens has no reference function for sweep {kind!r}")
    _, clean_cache = model.run_with_cache(clean_tokens)
    return getattr(tl_patching, s.reference)(model, corrupted_tokens, clean_cache, metric)


# ---------------------------------------------------------------------------------------------
# Attribution patching (Nanda 2023, "Attribution patching: activation patching at industrial scale";
# Syed et al. 2023): a first-order Taylor estimate of every patch from one forward and one backward pass,
#   metric(patched) ≈ metric(base) + Σ (source activation − base activation) · ∂metric/∂activation.

def _reduce(s: Sweep, x: Tensor) -> Tensor:
    """Sum a per-element product [batch, ...] over everything a sweep index does not name."""
    if s.act == "pattern":  # [b, head, dest, src] -> [head] or [head, dest]
        return x.sum((0, 2, 3)) if s.axes == ("head",) else x.sum((0, 3))
    if s.act in ("z", "q", "k", "v"):  # [b, pos, head, d] -> [head] or [pos, head]
        return x.sum((0, 1, 3)) if s.axes == ("head",) else x.sum((0, 3))
    return x.sum((0, 2)) if s.axes == ("pos",) else x.sum()  # [b, pos, d] -> [pos] or []


def attribution_sweep(model: HookedTransformer, kind: str, metric: Metric, clean_tokens: Tensor,
                      corrupted_tokens: Tensor, *, direction: str = "clean_to_corrupted") -> Tensor:
    """Attribution-patching estimate of :func:`patch_sweep` (same shape: estimated metric values)."""
    s = _sweep(kind, model)
    _check_tokens(model, clean_tokens, corrupted_tokens)
    base_tokens, source_tokens = _runs(model, clean_tokens, corrupted_tokens, direction, None)
    names = [utils.get_act_name(s.act, layer) for layer in range(model.cfg.n_layers)]
    with torch.inference_mode():
        _, src_cache = model.run_with_cache(source_tokens, names_filter=lambda n: n in names)
    acts, grads = {}, {}

    def keep_act(act, hook):
        acts[hook.name] = act.detach()

    def keep_grad(grad, hook):
        grads[hook.name] = grad.detach()

    with torch.enable_grad(), model.hooks(fwd_hooks=[(n, keep_act) for n in names],
                                          bwd_hooks=[(n, keep_grad) for n in names]):
        value = metric(model(base_tokens))
        if not torch.isfinite(value):
            raise ValueError("attribution patching: the metric of the base run is NaN or inf")
        value.backward()
    model.zero_grad(set_to_none=True)
    est = torch.stack([_reduce(s, (src_cache[n] - acts[n]) * grads[n]) for n in names])
    return _checked(est.detach().cpu() + value.detach().cpu(), f"attribution sweep {kind!r}")


def agreement(true: Tensor, approx: Tensor) -> dict[str, float]:
    """How well an approximation (attribution patching) matches true activation patching."""
    t, a = true.flatten().double(), approx.flatten().double()
    tc, ac = t - t.mean(), a - a.mean()
    denom = float(tc.norm() * ac.norm())
    return {"pearson": float(tc @ ac) / denom if denom > 0 else float("nan"),
            "max_abs_diff": float((t - a).abs().max()), "mean_abs_diff": float((t - a).abs().mean()),
            "n": t.numel()}


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
        _check_index("layer", [layer], model.cfg.n_layers)
        _check_index("head", [head], model.cfg.n_heads)
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
    _check_tokens(model, clean_tokens, corrupted_tokens)
    c = model.cfg
    recv = _check_receivers(model, receivers)
    grid = senders is None
    send = [(la, h) for la in range(c.n_layers) for h in range(c.n_heads)] if grid else [
        (_check_index("layer", [la], c.n_layers)[0], _check_index("head", [h], c.n_heads)[0]) for la, h in senders]
    n_pos = clean_tokens.shape[1]
    pos_mask = torch.zeros(n_pos, dtype=torch.bool, device=c.device)
    pos_mask[_check_index("position", sender_positions, n_pos)] = True

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
    chunk = max(1, budget // _per_variant_bytes(model, batch, n_pos, last_position_only))
    out = torch.empty(len(send), device=c.device)
    for i in range(0, len(send), chunk):
        part = send[i:i + chunk]
        n = len(part)
        deltas = torch.stack([delta(la, h) for la, h in part])  # [n batch pos d_model]
        if not recv:
            resid = clean[utils.get_act_name("resid_post", c.n_layers - 1)][None] + deltas
            logits = _final_logits(model, resid.flatten(0, 1), last_position_only)
        else:
            logits = _receiver_run(model, clean, recv, part, deltas, n, batch, last_position_only)
        out[i:i + n] = _metrics(metric, logits, n, batch)
    out = _checked(out.cpu(), "path patching")
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
            resid = _run_suffix(model, clean, first, 0, n, None, clean[utils.get_act_name("resid_pre", first)].shape[1],
                                last_only)
    finally:
        model.set_use_split_qkv_input(split)
    return _final_logits(model, resid, last_only)


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
    _check_tokens(model, tokens, None)
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
    _check_tokens(model, tokens, None)
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
    chunk = max(1, budget // _per_variant_bytes(model, batch, n_pos, False))
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
            resid = _run_suffix(model, cache, start, 0, n, None, n_pos)
        logits = _final_logits(model, resid, False)
        out += [metric(logits[j * batch:(j + 1) * batch]) for j in range(n)]
    return [o.cpu() for o in out]
