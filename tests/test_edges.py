"""The model graph and the edge scorers, against counts from the literature, a brute-force loop and a linear model."""

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from mechrepro.bench import naive_exact_scores
from mechrepro.techniques import edges as E
from mechrepro.techniques.graph import (
    Graph,
    bias_into,
    dest_groups,
    node_outputs,
    output_hook_names,
    split_inputs,
)


def _mlp_model(seed=0, dtype=torch.float32) -> HookedTransformer:
    cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_heads=4, d_head=4, n_ctx=12, d_vocab=24, act_fn="gelu",
                                  d_mlp=32, normalization_type="LN", seed=seed, dtype=dtype)
    m = HookedTransformer(cfg, move_to_device=False).eval()
    with torch.no_grad():  # biases that are not zero, so that the bias bookkeeping is exercised
        g = torch.Generator().manual_seed(seed)
        for name, p in m.named_parameters():
            if name.endswith(("b_O", "b_in", "b_out", "b_Q", "b_V")):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return m


def _linear_model() -> HookedTransformer:
    """Attention-only, no LayerNorm, W_Q = W_K = 0: every pattern is uniform whatever the input, so the logits are
    linear in every node's output and first-order attribution is exact."""
    cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_heads=3, d_head=4, n_ctx=12, d_vocab=24, attn_only=True,
                                  normalization_type=None, seed=3, dtype=torch.float64)
    m = HookedTransformer(cfg, move_to_device=False).eval()
    with torch.no_grad():
        for blk in m.blocks:
            blk.attn.W_Q.zero_()
            blk.attn.W_K.zero_()
            blk.attn.b_O.normal_(0, 0.3)
    return m


def _pairs(model, seed=0, batch=3, pos=7) -> E.Pairs:
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, model.cfg.d_vocab, (batch, pos), generator=g)
    corrupted = torch.randint(0, model.cfg.d_vocab, (batch, pos), generator=g)
    return E.Pairs(clean, corrupted, lambda logits: logits[:, -1, 3] - logits[:, -1, 5])


def test_edge_counts_match_the_literature():
    assert Graph(n_layers=2, n_heads=4, has_mlp=True).n_edges == 110  # the 2-layer, 4-head example
    assert Graph(n_layers=12, n_heads=12, has_mlp=True).n_edges == 32491  # GPT-2 small, as in MIB's EDGE_COUNTS
    assert Graph.of(_mlp_model()).n_edges == 110
    attn_only = Graph(n_layers=2, n_heads=4, has_mlp=False)
    assert attn_only.n_edges == 4 * 3 * 1 + 4 * 3 * 5 + 9  # q/k/v of layer 0, of layer 1, the logits


def test_contributions_sum_to_each_destination_input():
    m = _mlp_model()
    graph = Graph.of(m)
    tokens = _pairs(m).clean
    with split_inputs(m):
        _, cache = m.run_with_cache(tokens)
    outs, bias = node_outputs(m, cache), bias_into(m, graph)
    for name, _, _, dests in dest_groups(graph):
        act = cache[name]
        for j, d in enumerate(dests):
            target = act[:, :, j] if act.ndim == 4 else act
            total = torch.einsum("u,ubpd->bpd", graph.adjacency[d].float(), outs) + bias[d]
            assert torch.allclose(total, target, atol=1e-5), graph.dests[d].name
    assert set(output_hook_names(m)) <= set(cache.keys())


@pytest.mark.parametrize("model_fn", [_mlp_model, _linear_model])
def test_no_edge_removed_is_the_clean_model_and_every_edge_the_corrupted_one(model_fn):
    m = model_fn()
    graph, pairs = Graph.of(m), _pairs(m)
    src = E.ablation_source(E.outputs(m, pairs.corrupted)[1], "patching")
    removed = torch.zeros(2, *graph.adjacency.shape, dtype=torch.bool)
    removed[1] = graph.adjacency
    vals = E.run_with_edges_removed(m, graph, pairs, removed, src)
    with torch.no_grad():
        assert torch.allclose(vals[0], pairs.metric(m(pairs.clean)), atol=1e-4)
        assert torch.allclose(vals[1], pairs.metric(m(pairs.corrupted)), atol=1e-4)


def test_exact_scores_equal_a_brute_force_loop():
    m = _mlp_model(seed=1)
    graph, pairs = Graph.of(m), _pairs(m, seed=1)
    fast = E.exact_scores(m, graph, pairs, memory_budget=1 << 16)  # small chunks: several per layer
    ref = naive_exact_scores(m, graph, pairs)  # one hooked forward pass per edge (mechrepro.bench's reference)
    assert fast.shape == (3, 110)
    assert torch.allclose(fast, ref, atol=1e-5), (fast - ref).abs().max()
    assert ref.abs().max() > 1e-2  # the edges do something


def test_eap_and_eap_ig_equal_exact_where_the_metric_is_linear():
    m = _linear_model()
    graph, pairs = Graph.of(m), _pairs(m, seed=2)
    exact = E.exact_scores(m, graph, pairs)
    assert exact.abs().max() > 1e-2
    assert torch.allclose(E.eap_scores(m, graph, pairs), exact, atol=1e-5)
    assert torch.allclose(E.eap_scores(m, graph, pairs, ig_steps=5), exact, atol=1e-5)


def test_eap_ig_with_one_step_is_eap_and_more_steps_differ_where_the_model_is_not_linear():
    """k/m = 1 is the clean input: one step is plain EAP; with LayerNorm and GELU, the interpolated gradients differ."""
    m = _mlp_model(seed=4)
    graph, pairs = Graph.of(m), _pairs(m, seed=4)
    eap = E.eap_scores(m, graph, pairs)
    assert torch.allclose(E.eap_scores(m, graph, pairs, ig_steps=1), eap, atol=1e-6)
    assert not torch.allclose(E.eap_scores(m, graph, pairs, ig_steps=3), eap, atol=1e-3)


def test_bad_inputs_are_named_before_any_compute():
    m = _mlp_model()
    graph, pairs = Graph.of(m), _pairs(m)
    with pytest.raises(ValueError, match="unknown method 'acdc'"):
        E.score_edges(m, graph, pairs, "acdc")
    with pytest.raises(ValueError, match="ig_steps >= 1"):
        E.eap_scores(m, graph, pairs, ig_steps=0)
    with pytest.raises(ValueError, match="unknown ablation 'noise'"):
        E.ablation_source(torch.zeros(1), "noise")
    short = E.Pairs(pairs.clean, pairs.corrupted[:, :-1], pairs.metric)
    with pytest.raises(ValueError, match="differ in shape"):
        E.exact_scores(m, graph, short)
    gqa = HookedTransformerConfig(n_layers=1, d_model=16, n_heads=4, d_head=4, n_ctx=8, d_vocab=10, attn_only=True,
                                  n_key_value_heads=2)
    with pytest.raises(ValueError, match="grouped-query attention"):
        Graph.of(HookedTransformer(gqa, move_to_device=False))


def test_reading_only_the_answer_position_changes_no_score():
    """``answer_pos`` unembeds one position per prompt; scores and circuit metrics are those of the full logits."""
    m = _mlp_model(seed=6)
    graph, full = Graph.of(m), _pairs(m, seed=6)
    at = E.Pairs(full.clean, full.corrupted, full.metric, answer_pos=torch.full((3,), full.clean.shape[1] - 1))
    for scorer in (E.exact_scores, E.eap_scores):
        assert torch.allclose(scorer(m, graph, at), scorer(m, graph, full), atol=1e-6)
    # a prompt-specific position: shift one prompt's answer one step earlier, against the full-logits reading
    pos = torch.tensor([6, 5, 6])
    rows = torch.arange(3)
    shifted = E.Pairs(full.clean, full.corrupted, lambda lg: lg[:, -1, 3] - lg[:, -1, 5], answer_pos=pos)
    by_hand = E.Pairs(full.clean, full.corrupted, lambda lg: lg[rows, pos, 3] - lg[rows, pos, 5])
    assert torch.allclose(E.exact_scores(m, graph, shifted), E.exact_scores(m, graph, by_hand), atol=1e-6)


def test_exact_scores_equal_the_general_edge_removal():
    """exact_scores' shortcut (one addition per variant, from the destination's layer) against
    run_with_edges_removed with that one edge removed (every node's output recorded and mixed)."""
    m = _mlp_model(seed=8)
    graph, pairs = Graph.of(m), _pairs(m, seed=8)
    src = E.ablation_source(E.outputs(m, pairs.corrupted)[1], "patching")
    removed = torch.zeros(graph.n_edges, *graph.adjacency.shape, dtype=torch.bool)
    removed[torch.arange(graph.n_edges), graph.edge_index[:, 0], graph.edge_index[:, 1]] = True
    with torch.no_grad():
        base = pairs.metric(m(pairs.clean))
    general = E.run_with_edges_removed(m, graph, pairs, removed, src) - base[None]
    assert torch.allclose(E.exact_scores(m, graph, pairs), general.T, atol=1e-5)


@pytest.mark.parametrize("ablation", ["patching", "zero"])
def test_exact_scores_with_an_output_vocabulary_of_another_size(ablation):
    """tracr models unembed to fewer outputs than they embed (d_vocab_out != d_vocab): the batched logits are read
    with the output width (this once crashed, and silently mixed variants when the sizes divided)."""
    cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, n_ctx=8, d_vocab=12, d_vocab_out=4,
                                  attn_only=True, normalization_type=None, seed=5)
    m = HookedTransformer(cfg, move_to_device=False).eval()
    graph = Graph.of(m)
    g = torch.Generator().manual_seed(5)
    pairs = E.Pairs(torch.randint(0, 12, (3, 6), generator=g), torch.randint(0, 12, (3, 6), generator=g),
                    lambda logits: logits[:, 1:, 2].sum(-1))
    src = E.ablation_source(E.outputs(m, pairs.corrupted)[1], ablation)
    removed = torch.zeros(graph.n_edges, *graph.adjacency.shape, dtype=torch.bool)
    removed[torch.arange(graph.n_edges), graph.edge_index[:, 0], graph.edge_index[:, 1]] = True
    with torch.no_grad():
        base = pairs.metric(m(pairs.clean))
    general = E.run_with_edges_removed(m, graph, pairs, removed, src) - base[None]
    assert torch.allclose(E.exact_scores(m, graph, pairs, ablation=ablation), general.T, atol=1e-5)
