"""RASP programs compiled by tracr, converted to TransformerLens, with their circuit read off the compiled weights.

Conmy et al. 2023 (*Towards Automated Circuit Discovery*, ACDC) score discovery methods against two tracr programs
(Lindner et al. 2023, *Tracr: Compiled Transformers as a Laboratory for Interpretability*): ``reverse`` (reverse the
input; ``make_reverse``: length by a selector width, opp_idx = length - indices - 1 in two MLPs, then an attention
head that selects ``indices == opp_idx`` and copies the token) and ``frac_prevs`` (``make_frac_prevs(tokens == "x")``:
the running fraction of "x" tokens, a numerical output). ACDC derived their ground-truth circuits by hand; here they
are read off the weights (:func:`ground_truth_edges`): tracr gives each SOp its own residual subspace (one-hot
directions for a categorical SOp, one direction for a numerical one) and each component reads only the subspaces of
the SOps it depends on and writes only its own SOp's.

* :data:`PROGRAMS`: the programs with ACDC's vocabularies and lengths (``max_seq_len`` 5, a BOS token first);
* :func:`compile_program` -> tracr's ``AssembledTransformerModel``; :func:`to_transformer_lens`: the same weights as a
  ``HookedTransformer`` (float32, as tracr runs in: jax's default precision);
* :func:`build` -> :class:`~mechrepro.groundtruth.GroundTruth` with ablation ``"zero"`` (the circuit is exact under
  zero ablation: see :func:`ground_truth_edges`);
* :func:`task_pairs`: clean / corrupted inputs and a per-prompt metric that is linear in the logits.

tracr (``tracr-pypi``, which brings jax and haiku) is imported inside the functions that need it: importing this
module costs nothing, the first compile about 2 s of jax start-up.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool
from torch import Tensor
from transformer_lens import HookedTransformer, HookedTransformerConfig

from mechrepro.groundtruth import GroundTruth
from mechrepro.techniques.edges import Pairs
from mechrepro.techniques.graph import HEAD, INPUT, LOGITS, MLP, Graph

BOS, PAD = "BOS", "compiler_pad"


def _make_reverse():
    from tracr.compiler import lib
    from tracr.rasp import rasp
    # ACDC's (and tracr's lib): opp_idx = (length - indices) - 1; Aggregate(Select(indices, opp_idx, EQ), tokens)
    return lib.make_reverse(rasp.tokens)


def _make_frac_prevs():
    from tracr.compiler import lib
    from tracr.rasp import rasp
    return lib.make_frac_prevs(rasp.tokens == "x")


@dataclass(frozen=True)
class Program:
    """A RASP program (``make`` builds a fresh SOp each call) and its default vocabulary and length."""

    make: Callable[[], Any]
    vocab: tuple
    max_seq_len: int
    doc: str


PROGRAMS: dict[str, Program] = {
    "reverse": Program(_make_reverse, (1, 2, 3), 5, "the input reversed (categorical), as ACDC's tracr-reverse"),
    "frac_prevs": Program(_make_frac_prevs, ("a", "b", "c", "x"), 5,
                          "the fraction of tokens so far that are 'x' (numerical), as ACDC's tracr-proportion"),
}
OVERRIDES = ("vocab", "max_seq_len", "mlp_exactness")


def _program(name: str) -> Program:
    if name not in PROGRAMS:
        raise ValueError(f"unknown tracr program {name!r}; known: {', '.join(PROGRAMS)}")
    return PROGRAMS[name]


def _settings(program: str, overrides: dict) -> dict:
    prog = _program(program)
    unknown = set(overrides) - set(OVERRIDES)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)} for tracr program {program!r}; known: "
                         f"{', '.join(OVERRIDES)}")
    out = {"vocab": prog.vocab, "max_seq_len": prog.max_seq_len, "mlp_exactness": 100, **overrides}
    out["vocab"] = tuple(sorted(out["vocab"], key=str))
    if BOS in out["vocab"] or PAD in out["vocab"]:
        raise ValueError(f"the vocabulary must not contain {BOS!r} or {PAD!r} (tracr's own tokens)")
    return out


def compile_program(program: str, **overrides):
    """(tracr's ``AssembledTransformerModel``, the RASP program, the settings used): ``compile_rasp_to_model`` with
    ``compiler_bos="BOS"`` (and tracr's default PAD token, which the inputs here never use)."""
    from tracr.compiler import compiling
    s = _settings(program, overrides)
    sop = _program(program).make()
    assembled = compiling.compile_rasp_to_model(sop, vocab=set(s["vocab"]), max_seq_len=s["max_seq_len"],
                                                compiler_bos=BOS, compiler_pad=PAD, mlp_exactness=s["mlp_exactness"])
    return assembled, sop, s


def _np(x) -> np.ndarray:
    return np.array(x, dtype=np.float32)  # a writable copy (jax arrays are read-only)


def unembedding(assembled) -> np.ndarray:
    """tracr's unembedding as a matrix [d_model n_out]: its projection of the residual stream onto the output
    SOp's subspace (categorical: one column per output value, in the output encoder's order; numerical: the one
    output direction). Evaluated by running tracr's own unembed module on the identity, not rebuilt from labels."""
    import haiku as hk
    import jax.numpy as jnp

    @hk.without_apply_rng
    @hk.transform
    def unembed(x):
        return assembled.get_compiled_model().unembed(x, use_unembed_argmax=False)
    d_model = len(assembled.residual_labels)
    w = _np(unembed.apply({}, jnp.eye(d_model)))
    return w.reshape(d_model, -1)


def is_categorical(assembled) -> bool:
    return hasattr(assembled.output_encoder, "encoding_map")


def to_transformer_lens(assembled, seed: int = 0) -> HookedTransformer:
    """The compiled model as a ``HookedTransformer`` with the same weights.

    Token ids are tracr's input encoding (``assembled.input_encoder.encoding_map``, BOS and PAD included); tracr's
    position embedding has a zero row for the BOS position. Attention is bidirectional (tracr compiles non-causal
    models here), scaled by 1/sqrt(key_size) as tracr's; no LayerNorm; ReLU MLPs. ``W_U`` is :func:`unembedding`
    (so the logits of a categorical program are the output SOp's one-hot coordinates, of a numerical one its value);
    ``b_U`` is zero. All biases are tracr's (zero: tracr sets only the ``w`` of its layers)."""
    cfg_t = assembled.model_config
    if cfg_t.layer_norm or cfg_t.causal:
        raise ValueError("only tracr models without layer norm and without causal masking are supported")
    p = {k: {kk: _np(vv) for kk, vv in v.items()} for k, v in assembled.params.items()}
    w_e, w_pos = p["token_embed"]["embeddings"], p["pos_embed"]["embeddings"]
    w_u = unembedding(assembled)
    n_layers, n_heads, d_head = cfg_t.num_layers, cfg_t.num_heads, cfg_t.key_size
    d_model = w_e.shape[1]
    cfg = HookedTransformerConfig(
        n_layers=n_layers, d_model=d_model, d_head=d_head, n_heads=n_heads, d_mlp=cfg_t.mlp_hidden_size,
        act_fn="relu", normalization_type=None, attn_only=False, n_ctx=w_pos.shape[0], d_vocab=w_e.shape[0],
        d_vocab_out=w_u.shape[1], positional_embedding_type="standard", attention_dir="bidirectional",
        default_prepend_bos=False, seed=seed, dtype=torch.float32)
    model = HookedTransformer(cfg, move_to_device=False)
    sd = {"embed.W_E": w_e, "pos_embed.W_pos": w_pos, "unembed.W_U": w_u,
          "unembed.b_U": np.zeros(w_u.shape[1], np.float32)}
    for la in range(n_layers):
        pre = f"transformer/layer_{la}"
        for tl, tr in (("Q", "query"), ("K", "key"), ("V", "value")):
            w = p[f"{pre}/attn/{tr}"]["w"]  # [d_model (head d_head)]
            sd[f"blocks.{la}.attn.W_{tl}"] = w.reshape(d_model, n_heads, d_head).transpose(1, 0, 2)
            sd[f"blocks.{la}.attn.b_{tl}"] = p[f"{pre}/attn/{tr}"]["b"].reshape(n_heads, d_head)
        sd[f"blocks.{la}.attn.W_O"] = p[f"{pre}/attn/linear"]["w"].reshape(n_heads, d_head, d_model)
        sd[f"blocks.{la}.attn.b_O"] = p[f"{pre}/attn/linear"]["b"]
        sd[f"blocks.{la}.mlp.W_in"] = p[f"{pre}/mlp/linear_1"]["w"]
        sd[f"blocks.{la}.mlp.b_in"] = p[f"{pre}/mlp/linear_1"]["b"]
        sd[f"blocks.{la}.mlp.W_out"] = p[f"{pre}/mlp/linear_2"]["w"]
        sd[f"blocks.{la}.mlp.b_out"] = p[f"{pre}/mlp/linear_2"]["b"]
    params = dict(model.named_parameters())
    if set(params) != set(sd):
        raise RuntimeError(f"tracr -> TransformerLens: parameters not mapped {sorted(set(params) - set(sd))}, "
                           f"unknown {sorted(set(sd) - set(params))}")
    with torch.no_grad():
        for name, value in sd.items():
            t = torch.from_numpy(np.ascontiguousarray(value))
            if tuple(t.shape) != tuple(params[name].shape):
                raise RuntimeError(f"tracr -> TransformerLens: {name} is {tuple(t.shape)}, the model's "
                                   f"{tuple(params[name].shape)}")
            params[name].copy_(t)
    return model.eval()


def encode(assembled, seqs: list[list]) -> Tensor:
    """Token ids [batch pos] of input sequences (each with BOS first), by tracr's input encoder."""
    return torch.tensor([assembled.input_encoder.encode(list(s)) for s in seqs], dtype=torch.long)


def tracr_run(assembled, tokens: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """tracr's own forward on a batch of token ids: (its unembedded output [batch pos]: argmax ids for a
    categorical program, values for a numerical one; its final residual stream [batch pos d_model])."""
    import jax.numpy as jnp
    out = assembled.forward(assembled.params, jnp.asarray(tokens.numpy()))
    return np.asarray(out.unembedded_output), np.asarray(out.transformer_output.output)


# ---------------------------------------------------------------------------------------------------------------------
# the ground truth, from the weights

def write_matrices(model: HookedTransformer, graph: Graph) -> list[Tensor]:
    """Per upstream node, a matrix whose rows span everything it can write to the residual stream: the input its
    token and position embedding rows; a head its ``W_O`` [d_head d_model]; an MLP its ``W_out`` and ``b_out``."""
    out = []
    for n in graph.nodes:
        if n.kind == INPUT:
            out.append(torch.cat([model.W_E, model.W_pos]))
        elif n.kind == HEAD:
            out.append(model.W_O[n.layer, n.head])
        else:
            out.append(torch.cat([model.W_out[n.layer], model.b_out[n.layer][None]]))
    return [w.detach().double() for w in out]


def read_matrices(model: HookedTransformer, graph: Graph) -> list[Tensor]:
    """Per destination, the matrix [d_model ...] it reads the residual stream through: a head's ``W_Q`` / ``W_K`` /
    ``W_V``, an MLP's ``W_in``, the logits' ``W_U``."""
    out = []
    for d in graph.dests:
        if d.kind == LOGITS:
            out.append(model.W_U)
        elif d.kind == MLP:
            out.append(model.W_in[d.layer])
        else:
            out.append({"q": model.W_Q, "k": model.W_K, "v": model.W_V}[d.kind][d.layer, d.head])
    return [w.detach().double() for w in out]


def ground_truth_edges(assembled, model: HookedTransformer, tol: float = 1e-6) -> Bool[Tensor, "dest node"]:
    """The compiled circuit as a bool [dest node] mask over ``Graph.of(model)``, read off the weights.

    Rule: an edge u -> d is in the circuit iff what u can write reaches what d reads, i.e. the product of u's
    write matrix (:func:`write_matrices`: rows spanning its possible outputs) and d's read matrix
    (:func:`read_matrices`) is not zero: max |W_write(u) @ W_read(d)| > ``tol`` * max|W_write(u)| * max|W_read(d)|.
    tracr gives every SOp its own residual directions; a component writes only its SOp's and reads only those of
    the SOps it depends on, so the product is exactly zero (not merely small) between unrelated components, and the
    components of empty layers (tracr pads a layer it has no attention or MLP for with zero weights, and unused heads
    of a layer) have no edges at all. Then edges into a component none of whose output reaches the logits through
    circuit edges are dropped (a dead end; none in the programs here).

    Why the circuit is exact under zero ablation: a removed edge u -> d replaces u's output in d's input by zero;
    u's output lies in the row space of W_write(u), which d reads as zero anyway. So d's input as d sees it, and
    everything after it, is unchanged: removing every edge outside the circuit leaves the outputs as they were
    (tests/test_groundtruth_tracr.py checks it). Under patching (the corrupted run's output instead of zero) circuit
    edges whose source does not differ between the runs (the position embedding) score zero, so the circuit is exact
    but not every edge of it is visible.

    ``assembled`` is only checked against ``model`` (the same residual width): the weights read are the model's,
    which :func:`to_transformer_lens` copies from tracr's unchanged."""
    if assembled is not None and len(assembled.residual_labels) != model.cfg.d_model:
        raise ValueError(f"the tracr model's residual stream has {len(assembled.residual_labels)} dimensions, the "
                         f"model {model.cfg.d_model}: not the model converted from it")
    graph = Graph.of(model)
    writes, reads = write_matrices(model, graph), read_matrices(model, graph)
    edges = torch.zeros_like(graph.adjacency)
    for i, j in graph.adjacency.nonzero().tolist():
        w, r = writes[j], reads[i]
        scale = float(w.abs().max() * r.abs().max())
        edges[i, j] = scale > 0 and float((w @ r).abs().max()) > tol * scale
    return _prune_dead_ends(graph, edges)


def _prune_dead_ends(graph: Graph, edges: Tensor) -> Tensor:
    """Drop edges into components that reach the logits through no circuit edge (repeated from the last layer)."""
    edges = edges.clone()
    owner_dests = {n: [i for i, d in enumerate(graph.dests) if d.owner == n] for n in graph.nodes if n.kind != INPUT}
    for j in reversed(range(1, len(graph.nodes))):
        if not edges[:, j].any():
            edges[owner_dests[graph.nodes[j]]] = False
    return edges


def subspaces(model: HookedTransformer, labels: list[str], tol: float = 1e-6) -> dict[str, dict[str, list[str]]]:
    """Per node the residual directions (``labels``, tracr's residual labels) it can write, per destination those
    it reads: the legible form of the ground truth (e.g. ``3.0<v>`` reads the ``tokens`` directions)."""
    graph = Graph.of(model)

    def nonzero(mask: Tensor) -> list[str]:
        return [labels[k] for k in mask.nonzero()[:, 0].tolist()]
    writes = {n.name: nonzero(w.abs().amax(0) > tol * max(float(w.abs().max()), 1e-30))
              for n, w in zip(graph.nodes, write_matrices(model, graph), strict=True)}
    reads = {d.name: nonzero(r.abs().amax(1) > tol * max(float(r.abs().max()), 1e-30))
             for d, r in zip(graph.dests, read_matrices(model, graph), strict=True)}
    return {"writes": writes, "reads": reads}


def sop_names(sop) -> dict[str, str]:
    """tracr's SOp labels (name + a process-wide unique id, e.g. ``opp_idx-1_3``) -> names, for the program's DAG."""
    out, stack = {}, [sop]
    while stack:
        e = stack.pop()
        if e.label not in out:
            out[e.label] = e.name
            stack.extend(e.children)
    return out


def readable_labels(labels: list[str], names: dict[str, str]) -> list[str]:
    """Residual labels with each SOp label replaced by its name (``length_5:3`` -> ``length:3``)."""
    by_length = sorted(names, key=len, reverse=True)
    out = []
    for lab in labels:
        for k in by_length:
            if re.match(re.escape(k) + r"($|[:_])", lab):
                lab = names[k] + lab[len(k):]
                break
        out.append(lab)
    return out


# ---------------------------------------------------------------------------------------------------------------------
# build and task

def check_against_tracr(assembled, model: HookedTransformer, tokens: Tensor) -> dict:
    """The converted model against tracr's forward on ``tokens``: whether the outputs agree at every position but
    BOS (categorical: the argmax; numerical: the value, to 1e-4), and the largest differences of the final residual
    stream and (numerical) the output."""
    t_out, t_resid = tracr_run(assembled, tokens)
    with torch.inference_mode():
        logits, cache = model.run_with_cache(tokens, names_filter=f"blocks.{model.cfg.n_layers - 1}.hook_resid_post")
    resid = cache[f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"].numpy()
    out = {"inputs": int(tokens.shape[0]), "max_abs_diff_resid": float(np.abs(resid - t_resid).max())}
    if is_categorical(assembled):
        out["outputs_equal"] = bool((logits.argmax(-1).numpy()[:, 1:] == t_out[:, 1:]).all())
    else:
        diff = float(np.abs(logits[..., 0].numpy() - t_out)[:, 1:].max())
        out.update(max_abs_diff_output=diff, outputs_equal=diff < 1e-4)
    return out


def random_inputs(vocab, max_seq_len: int, n: int, seed: int) -> list[list]:
    """``n`` random sequences of ``max_seq_len`` tokens of ``vocab``, each with BOS first."""
    g = np.random.default_rng(seed)
    vocab = list(vocab)
    return [[BOS, *(vocab[k] for k in g.integers(len(vocab), size=max_seq_len))] for _ in range(n)]


def build(program: str, seed: int = 0, n_check: int = 64, **overrides) -> GroundTruth:
    """Compile ``program`` (a key of :data:`PROGRAMS`; ``overrides``: vocab, max_seq_len, mlp_exactness), convert
    it, and check it against tracr on ``n_check`` random inputs (seeded by ``seed``; raises if any output differs).
    The ground truth is :func:`ground_truth_edges`, exact under zero ablation."""
    _settings(program, overrides)  # unknown programs and settings fail before jax is imported
    t0 = time.perf_counter()
    assembled, sop, s = compile_program(program, **overrides)
    # the time goes to the log, not the card: a ground truth must be byte-identical run to run
    print(f"tracr {program}: compiled in {time.perf_counter() - t0:.2f} s")
    return from_compiled(program, assembled, sop, s, seed=seed, n_check=n_check)


def from_compiled(program: str, assembled, sop, settings: dict, seed: int = 0, n_check: int = 64) -> GroundTruth:
    """:func:`build` from :func:`compile_program`'s output (the tests share one compile between checks)."""
    s = settings
    model = to_transformer_lens(assembled, seed=seed)
    edges = ground_truth_edges(assembled, model)
    check = check_against_tracr(assembled, model, encode(assembled, random_inputs(
        s["vocab"], s["max_seq_len"], n_check, seed)))
    if not check["outputs_equal"]:
        raise RuntimeError(f"tracr {program}: the converted model's outputs differ from tracr's ({check})")
    labels = readable_labels(list(assembled.residual_labels), sop_names(sop))
    c = model.cfg
    enc = assembled.input_encoder.encoding_map
    out_enc = getattr(assembled.output_encoder, "encoding_map", None)
    card = {"source": "tracr", "program": program, "doc": _program(program).doc, "vocab": list(s["vocab"]),
            "max_seq_len": s["max_seq_len"], "mlp_exactness": s["mlp_exactness"], "n_layers": c.n_layers,
            "n_heads": c.n_heads, "d_model": c.d_model, "d_head": c.d_head, "d_mlp": c.d_mlp,
            "seed": seed,
            "categorical": out_enc is not None,
            "input_tokens": sorted(enc, key=enc.get),  # token id -> value (BOS and PAD included)
            "output_tokens": None if out_enc is None else sorted(out_enc, key=out_enc.get),
            "residual_labels": labels, "subspaces": subspaces(model, labels), "tracr_check": check}
    return GroundTruth(f"tracr_{program}", model, edges, "zero", card=card)


def _encoding(gt_or_model, program: str) -> tuple[HookedTransformer, list, dict, int]:
    """(model, the vocabulary, token value -> id, max_seq_len) from a GroundTruth's card or, for a bare model, from
    the program's defaults (tracr sorts its token directions by their string form)."""
    if isinstance(gt_or_model, GroundTruth):
        model, card = gt_or_model.model, gt_or_model.card
        if card.get("program") not in (None, program):
            raise ValueError(f"the ground truth is tracr {card['program']!r}, not {program!r}")
        tokens, vocab, max_len = card["input_tokens"], card["vocab"], card["max_seq_len"]
    else:
        model, s = gt_or_model, _settings(program, {})
        tokens = sorted([*s["vocab"], BOS, PAD], key=str)
        vocab, max_len = list(s["vocab"]), s["max_seq_len"]
    if len(tokens) != model.cfg.d_vocab or max_len + 1 != model.cfg.n_ctx:
        raise ValueError(f"the model (d_vocab {model.cfg.d_vocab}, n_ctx {model.cfg.n_ctx}) is not tracr "
                         f"{program!r} with {len(tokens)} tokens and max_seq_len {max_len}")
    return model, vocab, {t: i for i, t in enumerate(tokens)}, max_len


def task_pairs(gt_or_model: GroundTruth | HookedTransformer, program: str, n_prompts: int, seed: int,
               lengths: tuple[int, ...] | None = None) -> list[Pairs]:
    """One :class:`Pairs` per input length (``lengths``; default: ``max_seq_len`` alone), each of ``n_prompts``
    random clean inputs (BOS, then that many random tokens) and as many other random inputs as the corrupted ones
    (each differs from its clean one somewhere).

    The metric is per prompt and linear in the logits, summed over the positions after BOS: categorical, the logit
    of the token the clean model predicts there (fixed here, from the clean run); numerical, the output value. Linear
    so that EAP's gradient means something at the clean point: a distance to the clean output (ACDC's L2 / KL) is
    minimal there and has zero gradient, so every edge would score 0. ``answer_pos`` None: every position counts.

    Full-length inputs only (the default) leave part of ``reverse``'s circuit invisible under zero ablation: the
    length is then always ``max_seq_len``, and zero-ablating the selector width that computes it decodes to the
    largest width, the right answer. Shorter ``lengths`` make those edges matter."""
    model, vocab, enc, max_len = _encoding(gt_or_model, program)
    lengths = (max_len,) if lengths is None else tuple(int(n) for n in lengths)
    if not lengths or any(not 1 <= n <= max_len for n in lengths):
        raise ValueError(f"lengths must be in 1..{max_len} (the program's max_seq_len), got {lengths}")
    g = np.random.default_rng(seed)
    ids = torch.tensor([enc[v] for v in vocab])
    out = []
    for length in lengths:
        clean = g.integers(len(vocab), size=(n_prompts, length))
        corrupted = g.integers(len(vocab), size=(n_prompts, length))
        same = (clean == corrupted).all(1)
        while same.any() and len(vocab) > 1:
            corrupted[same] = g.integers(len(vocab), size=(int(same.sum()), length))
            same = (clean == corrupted).all(1)
        bos = torch.full((n_prompts, 1), enc[BOS])
        clean_t = torch.cat([bos, ids[torch.from_numpy(clean)]], 1)
        corrupted_t = torch.cat([bos, ids[torch.from_numpy(corrupted)]], 1)
        out.append(Pairs(clean_t, corrupted_t, _metric(model, clean_t)))
    return out


def _metric(model: HookedTransformer, clean: Tensor):
    if model.cfg.d_vocab_out == 1:
        def value(logits):  # numerical: the output value, summed over the positions after BOS
            return logits[:, 1:, 0].sum(-1)
        return value
    with torch.no_grad():  # not inference_mode: EAP's backward saves this index
        pred = model(clean.to(model.cfg.device)).argmax(-1)[:, 1:]  # [batch pos-1]

    def predicted_logit(logits):  # categorical: the logit of the clean prediction, summed over the positions
        return logits[:, 1:].gather(-1, pred.to(logits.device)[..., None])[..., 0].sum(-1)
    return predicted_logit


__all__ = ["PROGRAMS", "build", "compile_program", "from_compiled", "ground_truth_edges", "subspaces", "task_pairs",
           "to_transformer_lens", "unembedding"]
