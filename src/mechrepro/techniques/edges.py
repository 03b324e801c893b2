"""Edge scores and edge-level ablation on the graph of :mod:`mechrepro.techniques.graph`.

* :func:`run_with_edges_removed`: the model on the clean prompts with a set of edges *removed*: a removed edge
  u -> d carries u's ablated output (by default its output on the corrupted prompt) instead of its output in the
  current run; every other edge carries the current run's. This is both the exact edge patching of ACDC (Conmy et
  al. 2023; one edge removed per variant) and the evaluation of a circuit (every edge outside it removed; Hanna et
  al. 2024 / MIB's ``evaluate_graph``): with no edge removed it is the clean model, with every edge removed (and the
  corrupted prompts as the source) the corrupted one. Variants are stacked on the batch dimension.
* :func:`exact_scores`: the effect of removing each edge alone, m(edge patched) - m(clean).
* :func:`eap_scores`: edge attribution patching (Syed et al. 2023, *Attribution Patching Outperforms Automated
  Circuit Discovery*): the first-order estimate (corrupted - clean output of u) . dm/d(input of d), from one forward
  pass per prompt set and one backward; with ``ig_steps`` = m, EAP-IG (Hanna et al. 2024, *Have Faith in
  Faithfulness*, the "inputs" variant): the gradient averaged over m runs whose input embedding is interpolated
  from the corrupted to the clean one (k/m, k = 1..m), times the same activation difference.

Scores are per prompt ([batch edge]), so a mean over prompts, a weighted mean or a bootstrap resample is a product
with a weight vector. Metrics are per prompt too: ``metric(logits [batch pos vocab]) -> [batch]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens import HookedTransformer

from mechrepro.techniques.engine import check_tokens, default_memory_budget, final_logits
from mechrepro.techniques.graph import (
    HEAD,
    INPUT,
    LOGITS,
    MLP,
    Graph,
    dest_groups,
    node_outputs,
    output_hook_names,
    split_inputs,
)

PerPrompt = Callable[[Tensor], Tensor]  # logits [batch pos vocab] -> metric [batch]
ABLATIONS = ("patching", "mean", "zero")


@dataclass(frozen=True)
class Pairs:
    """Clean and corrupted prompts of one length, position by position, and the per-prompt metric."""

    clean: Tensor  # [batch pos]
    corrupted: Tensor  # [batch pos]
    metric: PerPrompt
    # the one position per prompt that the metric reads [batch]: only there is the residual stream unembedded, and
    # the metric then gets logits [batch 1 vocab]; None: every position (logits [batch pos vocab])
    answer_pos: Tensor | None = None


def pair_logits(model: HookedTransformer, pairs: Pairs, resid: Tensor, n: int = 1) -> Tensor:
    """Logits of the final residual stream ``resid`` [n*batch pos d_model] of ``n`` stacked variants: at each
    prompt's ``answer_pos`` alone when it is set (a large vocabulary makes the unembedding the costliest step)."""
    if pairs.answer_pos is not None:
        pos = pairs.answer_pos.to(resid.device).repeat(n)
        resid = resid[torch.arange(resid.shape[0], device=resid.device), pos][:, None]
    return final_logits(model, resid, last_only=False)


def _budget(device) -> int:
    """Bytes a chunk of stacked variants may use: on a CPU 64 MiB (chunks that stay in cache ran 1.5-2x faster
    than 1 GiB ones on the toy models), on a GPU the engine's share of free memory."""
    return 64 << 20 if torch.device(device).type == "cpu" else default_memory_budget(device)


def check_pairs(model: HookedTransformer, pairs: Pairs) -> None:
    check_tokens(model, pairs.clean, pairs.corrupted)


@torch.inference_mode()
def outputs(model: HookedTransformer, tokens: Tensor) -> tuple[Tensor, Float[Tensor, "node batch pos d_model"]]:
    """(the final residual stream, every node's output) of one run."""
    names = set(output_hook_names(model))
    resid, cache = model.run_with_cache(tokens.to(model.cfg.device), names_filter=lambda n: n in names,
                                        stop_at_layer=model.cfg.n_layers)
    return resid, node_outputs(model, cache)


def ablation_source(corrupted_outputs: Tensor, ablation: str) -> Tensor:
    """What a removed edge carries: the corrupted run's output (per prompt), its mean over the prompts (per
    position), or zero."""
    if ablation == "patching":
        return corrupted_outputs
    if ablation == "mean":
        return corrupted_outputs.mean(1, keepdim=True).expand_as(corrupted_outputs)
    if ablation == "zero":
        return torch.zeros_like(corrupted_outputs)
    raise ValueError(f"unknown ablation {ablation!r}; known: {', '.join(ABLATIONS)}")


def _node_slices(graph: Graph) -> dict[tuple[int, str], list[int]]:
    out: dict[tuple[int, str], list[int]] = {(-1, INPUT): [0]}
    for la in range(graph.n_layers):
        out[la, HEAD] = graph.nodes_at(la, HEAD)
        if graph.has_mlp:
            out[la, MLP] = graph.nodes_at(la, MLP)
    return out


def _first_node_of_layer(graph: Graph, layer: int) -> int:
    """Index of the first node of ``layer`` (nodes before it: the input and every earlier layer)."""
    return 1 + layer * (graph.n_heads + int(graph.has_mlp))


@torch.no_grad()
def run_with_edges_removed(model: HookedTransformer, graph: Graph, pairs: Pairs, removed: Tensor,
                           source: Tensor, memory_budget: int | None = None) -> Float[Tensor, "variant batch"]:
    """Per-prompt metric of the clean prompts with, in variant i, the edges ``removed[i]`` (bool [variant dest node])
    carrying ``source`` (the ablated outputs [node batch pos d_model]) instead of the current run's outputs."""
    c = model.cfg
    n_var = removed.shape[0]
    if removed.shape[1:] != graph.adjacency.shape:
        raise ValueError(f"removed must be [variant {len(graph.dests)} {len(graph.nodes)}], got {tuple(removed.shape)}")
    removed = (removed & graph.adjacency).to(c.device)
    tokens = pairs.clean.to(c.device)
    batch, n_pos = tokens.shape
    n_nodes = len(graph.nodes)
    per_variant = 4 * batch * n_pos * (n_nodes * c.d_model + 12 * c.d_model + 4 * c.n_heads * n_pos + c.d_vocab_out)
    chunk = max(1, (memory_budget or _budget(c.device)) // per_variant)
    source = source.to(c.device)
    out = torch.empty(n_var, batch, device=c.device, dtype=c.dtype)
    with split_inputs(model):
        for lo in range(0, n_var, chunk):
            r = removed[lo:lo + chunk].to(source.dtype)  # [n dest node]
            diff = torch.zeros(n_nodes, r.shape[0], batch, n_pos, c.d_model, device=c.device, dtype=source.dtype)
            with model.hooks(fwd_hooks=_mixing_hooks(model, graph, r, diff, source)):
                resid = model(tokens.repeat(r.shape[0], 1), stop_at_layer=c.n_layers)
            logits = pair_logits(model, pairs, resid, r.shape[0])
            logits = logits.view(r.shape[0], batch, *logits.shape[1:])
            out[lo:lo + r.shape[0]] = torch.stack([pairs.metric(v) for v in logits])
    if not torch.isfinite(out).all():
        raise ValueError("the metric of a model with edges removed is NaN or inf")
    return out.cpu()


def _mixing_hooks(model: HookedTransformer, graph: Graph, r: Tensor, diff: Tensor, source: Tensor) -> list:
    """Forward hooks for :func:`run_with_edges_removed` on ``n`` stacked variants: each node's output hook records
    ``diff`` = source - current output [node n batch pos d_model]; each destination hook adds, per variant, the
    ``diff`` of the nodes whose edge into it is removed (``r`` [n dest node])."""
    n, batch = r.shape[0], diff.shape[2]
    n_nodes = len(graph.nodes)

    def record(idx: list[int]):
        def hook(act, hook):
            cur = act.view(n, batch, *act.shape[1:])
            if hook.name.endswith("hook_z"):  # [n b pos head d_head] -> [head n b pos d_model], one matmul per head
                w_o = model.W_O[int(hook.name.split(".")[1])]  # [head d_head d_model]
                z = cur.permute(3, 0, 1, 2, 4).reshape(w_o.shape[0], -1, w_o.shape[1])
                cur = torch.bmm(z, w_o).view(w_o.shape[0], *cur.shape[:3], w_o.shape[2])
            else:
                cur = cur[None]
            diff[idx] = source[idx][:, None] - cur
            return act
        return hook

    def inject(layer: int, kind: str, dests: list[int]):
        # the nodes before this destination: every earlier layer's, and for an MLP its own layer's heads
        upto = min(_first_node_of_layer(graph, layer) + (graph.n_heads if kind == MLP else 0), n_nodes)

        def hook(act, hook):
            w = r[:, dests, :upto]  # [n dests node]
            d = diff[:upto].transpose(0, 1).reshape(n, upto, -1)  # [n node (b pos d_model)]
            corr = torch.bmm(w, d).view(n, len(dests), batch, *diff.shape[3:])  # [n dests b pos d_model]
            if act.ndim == 4:  # q/k/v inputs [n*b pos head d_model]
                return act + corr.permute(0, 2, 3, 1, 4).reshape(act.shape)
            return act + corr[:, 0].reshape(act.shape)
        return hook

    slices = _node_slices(graph)
    hooks = []
    for name in output_hook_names(model):
        key = (-1, INPUT) if name == "blocks.0.hook_resid_pre" else (
            int(name.split(".")[1]), HEAD if name.endswith("hook_z") else MLP)
        hooks.append((name, record(slices[key])))
    split_layers = set()
    for name, layer, kind, dests in dest_groups(graph):
        if bool(r[:, dests].any()):
            hooks.append((name, inject(layer, kind, dests)))
            if kind in ("q", "k", "v"):
                split_layers.add(layer)

    # Per-head q/k/v inputs (TransformerLens's use_split_qkv_input) cost a LayerNorm and a projection per head:
    # switched on only in the blocks where a variant changes one (the flag is read after each block's hook_resid_pre;
    # split_inputs restores it after the run).
    def split_switch(layer: int):
        def hook(act, hook):
            model.cfg.use_split_qkv_input = layer in split_layers
        return hook
    return [(f"blocks.{la}.hook_resid_pre", split_switch(la)) for la in range(graph.n_layers)] + hooks


def exact_scores(model: HookedTransformer, graph: Graph, pairs: Pairs, ablation: str = "patching",
                 memory_budget: int | None = None) -> Float[Tensor, "batch edge"]:
    """Per prompt, m(edge alone removed) - m(clean), for every edge, batched.

    Removing one edge u -> d adds (source - clean output of u) to d's input and changes nothing before d, so each
    variant starts from the clean residual stream at d's layer and only that addition is hooked in (the
    destination's per-head input is split out in that block alone); an edge into the logits needs no block at all.
    ``run_with_edges_removed`` computes the same numbers the general way (tests/test_edges.py)."""
    check_pairs(model, pairs)
    c = model.cfg
    clean_resid, clean_out = outputs(model, pairs.clean)
    _, corr_out = outputs(model, pairs.corrupted)
    with torch.inference_mode():
        base = pairs.metric(pair_logits(model, pairs, clean_resid)).cpu()
    delta = ablation_source(corr_out, ablation) - clean_out  # [node batch pos d_model]
    e_idx = graph.edge_index  # [edge 2] (dest, node)
    batch, n_pos = pairs.clean.shape
    per_variant = 4 * batch * n_pos * (14 * c.d_model + 4 * c.n_heads * n_pos + (c.d_mlp or 0) * 2) + 4 * batch * (
        c.d_vocab_out if pairs.answer_pos is not None else n_pos * c.d_vocab_out)
    chunk = max(1, (memory_budget or _budget(c.device)) // per_variant)
    out = torch.empty(len(base), graph.n_edges, dtype=base.dtype)
    tokens = pairs.clean.to(c.device)
    groups = dest_groups(graph)
    with torch.inference_mode(), split_inputs(model):
        for layer in range(graph.n_layers + 1):
            which = [e for e in range(graph.n_edges) if graph.dests[int(e_idx[e, 0])].layer == layer]
            # the residual stream entering ``layer`` (the final one for the logits): clean outputs and biases
            start = clean_out[:_first_node_of_layer(graph, layer) if layer < graph.n_layers else None].sum(0) \
                + model.b_O[:layer].sum(0)
            for lo in range(0, len(which), chunk):
                part = which[lo:lo + chunk]
                n = len(part)
                add = delta[e_idx[part, 1]]  # [n batch pos d_model]: each variant's change to its destination
                if layer == graph.n_layers:
                    resid = (start[None] + add).flatten(0, 1)
                else:
                    hooks = [(f"blocks.{la}.hook_resid_pre", _split_only(model, layer, la))
                             for la in range(layer, graph.n_layers)]
                    for name, la, kind, dests in groups:
                        if la == layer and kind != LOGITS:
                            hooks.append((name, _add_at(e_idx[part, 0], dests, add, n)))
                    with model.hooks(fwd_hooks=hooks):
                        resid = model(start.repeat(n, 1, 1), start_at_layer=layer, stop_at_layer=c.n_layers,
                                      tokens=tokens.repeat(n, 1))
                logits = pair_logits(model, pairs, resid, n).view(n, batch, -1, c.d_vocab_out)
                out[:, part] = (torch.stack([pairs.metric(v) for v in logits]).cpu() - base[None]).T
    if not torch.isfinite(out).all():
        raise ValueError("exact edge patching: the metric of a patched model is NaN or inf")
    return out


def _split_only(model: HookedTransformer, layer: int, at: int):
    """A hook on block ``at``'s hook_resid_pre: per-head q/k/v inputs in block ``layer`` only."""
    def hook(act, hook):
        model.cfg.use_split_qkv_input = at == layer
    return hook


def _add_at(dest_of: Tensor, dests: list[int], add: Tensor, n: int):
    """A destination hook adding variant i's ``add[i]`` where ``dest_of[i]`` is one of this hook's ``dests`` (for a
    q/k/v hook, at that destination's head)."""
    slot = {d: j for j, d in enumerate(dests)}
    rows = [i for i, d in enumerate(dest_of.tolist()) if d in slot]
    heads = [slot[int(dest_of[i])] for i in rows]

    def hook(act, hook):
        if not rows:
            return act
        v = act.view(n, -1, *act.shape[1:])
        if v.ndim == 5:  # [n batch pos head d_model]
            v[rows, :, :, heads] += add[rows]
        else:
            v[rows] += add[rows]
        return act
    return hook


def eap_scores(model: HookedTransformer, graph: Graph, pairs: Pairs, ig_steps: int | None = None,
               ablation: str = "patching") -> Float[Tensor, "batch edge"]:
    """EAP (``ig_steps`` None) or EAP-IG with ``ig_steps`` interpolation steps: per prompt, per edge u -> d,
    (ablated - clean output of u) . mean gradient of the metric at d's input.

    The ablated output is :func:`ablation_source` of the corrupted run's (patching: the corrupted output itself;
    mean: its mean over prompts; zero: zero); EAP-IG interpolates the input embedding from its ablated value to the
    clean one."""
    if ig_steps is not None and (not isinstance(ig_steps, int) or ig_steps < 1):
        raise ValueError(f"EAP-IG needs ig_steps >= 1 (an integer), got {ig_steps!r}")
    check_pairs(model, pairs)
    c = model.cfg
    _, clean_out = outputs(model, pairs.clean)
    _, corr_out = outputs(model, pairs.corrupted)
    corr_out = ablation_source(corr_out, ablation)
    delta = corr_out - clean_out  # [node batch pos d_model]
    tokens = pairs.clean.to(c.device)
    grads = torch.zeros(len(graph.dests), *tokens.shape, c.d_model, device=c.device, dtype=c.dtype)
    groups = dest_groups(graph)

    def keep_grad(dests: list[int]):
        def hook(grad, hook):
            g = grad.detach()
            grads[dests] += g.permute(2, 0, 1, 3) if g.ndim == 4 else g[None]
        return hook

    steps = [None] if ig_steps is None else [k / ig_steps for k in range(1, ig_steps + 1)]
    clean_in, corr_in = clean_out[0], corr_out[0]
    for alpha in steps:
        def leaf(act, hook, alpha=alpha):  # a leaf that needs a gradient, whether the weights need one or not
            x = act if alpha is None else corr_in + alpha * (clean_in - corr_in)
            return x.detach().requires_grad_(True)
        with torch.enable_grad(), split_inputs(model), model.hooks(
                fwd_hooks=[("blocks.0.hook_resid_pre", leaf)], bwd_hooks=[(name, keep_grad(d)) for name, _, _, d in groups]):
            value = pairs.metric(pair_logits(model, pairs, model(tokens, stop_at_layer=c.n_layers)))
            if not torch.isfinite(value).all():
                raise ValueError("EAP: the metric of the clean run is NaN or inf")
            value.sum().backward()  # prompts are independent: row b of each gradient is prompt b's own
        model.zero_grad(set_to_none=True)
    grads /= len(steps)
    e_idx = graph.edge_index.to(c.device)
    # [batch dest node]: per prompt, every destination's gradient against every node's difference, summed over
    # positions and d_model (one matmul per prompt; gathering per edge first would materialise edges x pos x d_model)
    b, p = tokens.shape
    g = grads.permute(1, 0, 2, 3).reshape(b, len(graph.dests), p * c.d_model)
    dl = delta.permute(1, 0, 2, 3).reshape(b, len(graph.nodes), p * c.d_model)
    per = torch.bmm(g, dl.transpose(1, 2))
    return per[:, e_idx[:, 0], e_idx[:, 1]].detach().cpu()



def score_edges(model: HookedTransformer, graph: Graph, pairs: Pairs, method: str, ig_steps: int = 5,
                ablation: str = "patching") -> Float[Tensor, "batch edge"]:
    """Per-prompt edge scores by ``method``: exact, eap or eap_ig, each under ``ablation``."""
    if method == "exact":
        return exact_scores(model, graph, pairs, ablation=ablation)
    if method == "eap":
        return eap_scores(model, graph, pairs, ablation=ablation)
    if method == "eap_ig":
        return eap_scores(model, graph, pairs, ig_steps=ig_steps, ablation=ablation)
    raise ValueError(f"unknown method {method!r}; known: exact, eap, eap_ig (and random, a baseline)")


__all__ = ["ABLATIONS", "LOGITS", "Pairs", "ablation_source", "eap_scores", "exact_scores", "outputs",
           "run_with_edges_removed", "score_edges"]
