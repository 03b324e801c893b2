"""The forward machinery shared by the patching, path-patching and ablation functions.

Causal attention means a change at position p of layer L leaves every earlier position, at every layer, as in
the base run; these functions run only what a change can reach: the blocks from L on (``run_suffix``), on
positions p.. with the base run's cached keys and values before p, or one query per variant
(``one_query_block``) when only the last position's output is read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from transformer_lens import HookedTransformer, utils
from transformer_lens.cache.key_value_cache_entry import TransformerLensKeyValueCacheEntry

Metric = Callable[[Tensor], Tensor]  # logits [batch pos vocab] -> scalar tensor


def check_tokens(model: HookedTransformer, clean: Tensor, corrupted: Tensor | None) -> None:
    if clean.ndim != 2:
        raise ValueError(f"tokens must be [batch, pos], got shape {tuple(clean.shape)}")
    if corrupted is not None and corrupted.shape != clean.shape:
        raise ValueError(f"clean and corrupted tokens differ in shape: {tuple(clean.shape)} vs "
                         f"{tuple(corrupted.shape)} (patching needs prompts of equal length, position by position)")
    if clean.shape[1] > model.cfg.n_ctx:
        raise ValueError(f"{clean.shape[1]} tokens exceed the model's context of {model.cfg.n_ctx}")


def check_index(name: str, values: Sequence[int] | None, size: int) -> list[int]:
    if values is None:
        return list(range(size))
    out = []
    for v in values:
        if not -size <= int(v) < size:
            raise ValueError(f"{name} {v} is out of range: the model has {size} ({name}s 0..{size - 1})")
        out.append(int(v) % size)
    return out




def default_memory_budget(device) -> int:
    """Bytes a chunk of patched variants may use: 1 GiB on CPU, a third of the free memory on a GPU."""
    if torch.device(device).type == "cuda":
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free / 3)
    return 1 << 30


def per_variant_bytes(model: HookedTransformer, batch: int, pos: int, last_only: bool) -> int:
    c = model.cfg
    width = 6 * c.d_model + (c.d_mlp or 0) * 2 + 3 * c.n_heads * pos + (c.d_vocab // pos if last_only else c.d_vocab)
    return batch * pos * width * 4


def final_logits(model: HookedTransformer, resid: Tensor, last_only: bool) -> Tensor:
    if last_only:
        resid = resid[:, -1:]
    if model.cfg.normalization_type is not None:
        resid = model.ln_final(resid)
    return model.unembed(resid)


def checked(values: Tensor, what: str) -> Tensor:
    bad = ~torch.isfinite(values)
    if bad.any():
        raise ValueError(f"{what}: the metric returned NaN or inf for {int(bad.sum())} of {values.numel()} "
                         f"entries (first at flat index {int(bad.flatten().nonzero()[0])})")
    return values




def metrics_per_variant(metric: Metric, logits: Tensor, n: int, batch: int) -> Tensor:
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




def run_suffix(model: HookedTransformer, base_cache, layer: int, p: int, n: int, width: int | None,
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
        if last_only and i == c.n_layers - 1 and i > layer and resid.shape[1] > 1 and plain_block(c):
            # Only the last position's output is read. Its keys and values: recomputed where the residual
            # changed -- right after a local patch, position p alone; the base run's elsewhere.
            changed = 1 if (i == layer + 1 and width == 1) else resid.shape[1] - 1
            past = extend_kv(model.blocks[i], resid[:, :changed],
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


def plain_block(cfg) -> bool:
    """Pre-norm blocks with learned or shortformer positions: where :func:`extend_kv` reproduces the keys
    and values exactly as the block computes them."""
    return (cfg.positional_embedding_type in ("standard", "shortformer") and not cfg.use_attn_in
            and not cfg.use_split_qkv_input and cfg.original_architecture not in _POST_NORM)


_POST_NORM = ("OlmoeForCausalLM", "Olmo2ForCausalLM", "Olmo3ForCausalLM")


def extend_kv(block, resid: Tensor, pos_embed: Tensor | None, past: tuple[Tensor, Tensor] | None
               ) -> tuple[Tensor, Tensor]:
    """The block's keys and values for ``resid``'s positions (as its forward computes them), after ``past``."""
    x = block.ln1(resid)
    kq = x + (0.0 if pos_embed is None else pos_embed)
    _, k, v = block.attn.calculate_qkv_matrices(kq, kq, x)
    if past is None:
        return k, v
    return torch.cat([past[0], k], dim=1), torch.cat([past[1], v], dim=1)




def simple_attention(cfg) -> bool:
    """Configurations whose blocks :func:`one_query_block` reproduces: pre-norm, learned absolute positions,
    plain causal softmax attention (no soft-cap, sinks, grouped keys, local windows or QK-norm)."""
    from transformer_lens.utilities.activation_functions import softcap_enabled

    return (plain_block(cfg) and cfg.positional_embedding_type == "standard" and cfg.attention_dir == "causal"
            and not (cfg.use_attn_result or cfg.use_local_attn or cfg.use_attention_sinks or cfg.use_logn_attn
                     or cfg.use_qk_norm or cfg.load_in_4bit or cfg.parallel_attn_mlp
                     or cfg.use_normalization_before_and_after or cfg.use_hook_mlp_in)
            and cfg.n_key_value_heads is None and cfg.clip_qkv is None
            and not softcap_enabled(cfg.attn_scores_soft_cap))


def one_query_block(block, resid: Tensor, keys: Tensor, values: Tensor, visible: Tensor | None,
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
