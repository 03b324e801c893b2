"""tracr-compiled ground truths: the converted model equals tracr's, the circuit read off the weights is the
program's known structure, and it is exact under zero ablation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("tracr")

from mechrepro.groundtruth import GroundTruth  # noqa: E402
from mechrepro.groundtruth import tracr as T  # noqa: E402
from mechrepro.techniques.edges import ablation_source, exact_scores, outputs, run_with_edges_removed  # noqa: E402

PROGRAMS = tuple(T.PROGRAMS)


@pytest.fixture(scope="module")
def compiled():
    """Per program: (tracr's assembled model, the GroundTruth built from it): one compile each for the module."""
    out = {}
    for name in PROGRAMS:
        assembled, sop, settings = T.compile_program(name)
        out[name] = (assembled, T.from_compiled(name, assembled, sop, settings, n_check=16))
    return out


def edge_names(gt: GroundTruth) -> set[str]:
    g = gt.graph
    return {g.edge_name(e) for e in gt.edge_labels().nonzero()[:, 0].tolist()}


@pytest.mark.parametrize("name", PROGRAMS)
def test_outputs_equal_tracr(compiled, name):
    """On random inputs (a short and a full-length batch), TransformerLens's outputs are tracr's ``apply`` outputs
    (the decoded argmax for reverse, the value for frac_prevs), its final residual stream and logits tracr's (to
    1e-4). (jax compiles its ops anew for each input length, ~1 s each: hence two lengths.)"""
    assembled, gt = compiled[name]
    model, card = gt.model, gt.card
    w_u = T.unembedding(assembled)
    for length in (2, card["max_seq_len"]):
        seqs = T.random_inputs(card["vocab"], length, 4, seed=length)
        with torch.inference_mode():
            logits, cache = model.run_with_cache(T.encode(assembled, seqs))
        resid = cache[f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"].numpy()
        for b, seq in enumerate(seqs):
            ref = assembled.apply(seq)
            ref_resid = np.asarray(ref.transformer_output)[0]
            np.testing.assert_allclose(resid[b], ref_resid, atol=1e-4)
            np.testing.assert_allclose(logits[b].numpy(), ref_resid @ w_u, atol=1e-4)
            if card["categorical"]:
                decoded = [card["output_tokens"][k] for k in logits[b].argmax(-1).tolist()]
                assert decoded[1:] == ref.decoded[1:], seq
            else:
                np.testing.assert_allclose(logits[b, 1:, 0].numpy(), np.asarray(ref.decoded[1:], np.float32),
                                           atol=1e-5)
    assert card["tracr_check"]["outputs_equal"] and card["tracr_check"]["max_abs_diff_resid"] < 1e-4


def test_reverse_edges_are_the_programs_structure(compiled):
    """reverse: layer 0 computes length (a selector-width head and its MLP), MLP 1 opp_idx = length - indices, MLP 2
    opp_idx - 1, head 3.0 selects indices == opp_idx-1 and copies the token; layers 1-2 attention and MLP 3 are
    tracr's empty padding."""
    _, gt = compiled["reverse"]
    assert edge_names(gt) == {
        "input -> 0.0<q>", "input -> 0.0<k>", "input -> 0.0<v>",  # length's all-true selector, BOS in the value
        "0.0 -> MLP 0", "input -> MLP 0",  # the selector width's MLP (it reads 'one' and tokens:BOS too)
        "MLP 0 -> MLP 1", "input -> MLP 1",  # opp_idx reads length and indices
        "MLP 1 -> MLP 2",  # opp_idx-1 reads opp_idx
        "MLP 2 -> 3.0<q>", "input -> 3.0<q>",  # query: opp_idx-1 (and 'one', for attending to BOS)
        "input -> 3.0<k>", "input -> 3.0<v>",  # key: indices (and tokens:BOS); value: the tokens
        "3.0 -> logits",
    }
    reads = gt.card["subspaces"]["reads"]
    assert {r.split(":")[0] for r in reads["3.0<q>"]} == {"opp_idx-1", "one"}
    assert {r.split(":")[0] for r in reads["3.0<k>"]} == {"indices", "tokens"}
    assert reads["3.0<v>"] == ["tokens:1", "tokens:2", "tokens:3"]
    assert {r.split(":")[0] for r in reads["MLP 1"]} == {"indices", "length", "one"}
    assert reads["logits"] == ["reverse:1", "reverse:2", "reverse:3"]


def test_frac_prevs_edges(compiled):
    _, gt = compiled["frac_prevs"]
    assert edge_names(gt) == {"input -> MLP 0",  # the numerical map tokens == 'x'
                              "input -> 1.0<q>", "input -> 1.0<k>",  # Select(indices, indices, LEQ)
                              "MLP 0 -> 1.0<v>", "1.0 -> logits"}
    assert gt.card["subspaces"]["reads"]["MLP 0"] == ["tokens:x"]


@pytest.mark.parametrize("name", PROGRAMS)
def test_zero_ablating_every_non_circuit_edge_changes_nothing(compiled, name):
    """All edges outside the circuit removed at once (zero ablation): the metric is the clean one, on inputs of every
    length; removing every edge changes it (the check is not vacuous)."""
    _, gt = compiled[name]
    for pairs in T.task_pairs(gt, name, 16, seed=3, lengths=range(1, gt.card["max_seq_len"] + 1)):
        _, corr = outputs(gt.model, pairs.corrupted)
        zero = ablation_source(corr, "zero")
        with torch.inference_mode():
            base = pairs.metric(gt.model(pairs.clean))
        kept = run_with_edges_removed(gt.model, gt.graph, pairs, ~gt.edges[None], zero)[0]
        torch.testing.assert_close(kept, base, atol=1e-5, rtol=0)
    everything = run_with_edges_removed(gt.model, gt.graph, pairs, gt.graph.adjacency[None], zero)[0]
    assert (everything - base).abs().max() > 0.1


def test_each_edge_alone_under_zero_ablation(compiled):
    """reverse, each edge removed alone (zero ablation, lengths 2 and 4): no edge outside the circuit has any effect
    (tracr's subspaces are basis directions: not even a rounding error); every circuit edge has one except the q / k
    of length's all-true selector, whose zeroed query or key gives the same uniform attention as the clean run (a
    weight-level dependence that no input can show). The smallest nonzero one, ~1e-6: the 'one' direction of 3.0's
    query, which only makes the head fall back on BOS when nothing matches (never here; softmax leaves a trace).
    (At full length only, the length head and its value edge are silent too: zeroing them decodes the largest
    width, which is then the right length.)"""
    _, gt = compiled["reverse"]
    g = gt.graph
    single = torch.eye(len(g.dests) * len(g.nodes), dtype=torch.bool).view(-1, len(g.dests), len(g.nodes))
    single = single[g.adjacency.flatten()]  # [edge dest node], in edge order
    effect = torch.zeros(g.n_edges)
    for pairs in T.task_pairs(gt, "reverse", 8, seed=4, lengths=(2, 4)):
        _, corr = outputs(gt.model, pairs.corrupted)
        with torch.inference_mode():
            base = pairs.metric(gt.model(pairs.clean))
        m = run_with_edges_removed(gt.model, g, pairs, single, ablation_source(corr, "zero"))
        effect += (m - base).abs().amax(1)
    labels = gt.edge_labels()
    assert float(effect[~labels].max()) == 0
    silent = {g.edge_name(e) for e in range(g.n_edges) if labels[e] and effect[e] == 0}
    assert silent == {"input -> 0.0<q>", "input -> 0.0<k>"}


def test_exact_scores_on_a_model_with_fewer_outputs_than_inputs(compiled):
    """exact_scores (batched from each edge's layer) equals one run_with_edges_removed variant per edge on frac_prevs,
    whose 1 output is fewer than its 6 input tokens (edges.exact_scores once reshaped its logits by d_vocab)."""
    _, gt = compiled["frac_prevs"]
    g = gt.graph
    (pairs,) = T.task_pairs(gt, "frac_prevs", 8, seed=5)
    _, corr = outputs(gt.model, pairs.corrupted)
    single = torch.eye(len(g.dests) * len(g.nodes), dtype=torch.bool).view(-1, len(g.dests), len(g.nodes))
    with torch.inference_mode():
        base = pairs.metric(gt.model(pairs.clean))
    ref = run_with_edges_removed(gt.model, g, pairs, single[g.adjacency.flatten()], ablation_source(corr, "zero"))
    torch.testing.assert_close(exact_scores(gt.model, g, pairs, ablation="zero"), (ref - base).T, atol=1e-5, rtol=0)


def test_task_pairs(compiled):
    assembled, gt = compiled["reverse"]
    bos = assembled.input_encoder.bos_encoding
    sets = T.task_pairs(gt, "reverse", 10, seed=0, lengths=(2, 5))
    assert [p.clean.shape for p in sets] == [(10, 3), (10, 6)]
    for p in sets:
        assert (p.clean[:, 0] == bos).all() and (p.corrupted[:, 0] == bos).all()
        assert (p.clean[:, 1:] != bos).all() and (p.clean != p.corrupted).any(1).all()
        assert p.answer_pos is None
        with torch.inference_mode():
            m = p.metric(gt.model(p.clean))
        torch.testing.assert_close(m, torch.full((10,), float(p.clean.shape[1] - 1)), atol=1e-3, rtol=0)
    # the default: full length; a bare model gives the same prompts as its GroundTruth
    (a,), (b,) = T.task_pairs(gt, "reverse", 4, seed=1), T.task_pairs(gt.model, "reverse", 4, seed=1)
    assert a.clean.shape == (4, 6) and torch.equal(a.clean, b.clean) and torch.equal(a.corrupted, b.corrupted)
    with pytest.raises(ValueError, match="is tracr 'reverse', not 'frac_prevs'"):
        T.task_pairs(gt, "frac_prevs", 4, seed=0)
    with pytest.raises(ValueError, match="lengths"):
        T.task_pairs(gt, "reverse", 4, seed=0, lengths=(6,))


def test_unknown_program_and_setting():
    with pytest.raises(ValueError, match="known: reverse, frac_prevs"):
        T.build("sort")
    with pytest.raises(ValueError, match="unknown settings"):
        T.build("reverse", vocabulary={1, 2})


def test_save_load_round_trip(compiled, tmp_path):
    _, gt = compiled["frac_prevs"]
    gt.save(tmp_path / "gt")
    back = GroundTruth.load(tmp_path / "gt")
    assert back.name == gt.name and back.ablation == "zero" and torch.equal(back.edges, gt.edges)
    assert back.card == gt.card
    sd, sd_back = gt.model.state_dict(), back.model.state_dict()
    assert sd.keys() == sd_back.keys() and all(torch.equal(sd[k], sd_back[k]) for k in sd)


def test_loaded_model_computes_the_same(compiled, tmp_path):
    _, gt = compiled["reverse"]
    gt.save(tmp_path / "gt")
    back = GroundTruth.load(tmp_path / "gt")
    (pairs,) = T.task_pairs(gt, "reverse", 8, seed=0)
    with torch.inference_mode():
        torch.testing.assert_close(back.model(pairs.clean), gt.model(pairs.clean))
