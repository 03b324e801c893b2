"""A hand-built two-layer induction model: weights set so that head 0.0 is a perfect previous-token head and head
1.0 a perfect induction head (Olsson et al. 2022, *In-context Learning and Induction Heads*; Elhage et al. 2021).

The residual stream is split into three slots, each a one-hot code:
``[token (d_vocab) | position (n_ctx) | previous token (d_vocab)]``. Which slots a weight reads and writes fixes
the graph's edges:

* the input embedding writes the token and position slots (``W_E``, ``W_pos``);
* 0.0 (previous-token head): queries read the position slot, keys the position slot shifted by one, values the
  token slot; it writes the previous-token slot. Its edges in: input -> 0.0 <q>, <k>, <v>;
* 1.0 (induction head): queries read the token slot (written by the input alone), keys the previous-token slot
  (written by 0.0 alone), values the token slot; it writes the token slot, 3x (outweighing the direct path).
  Edges in: input -> 1.0 <q>, 0.0 -> 1.0 <k>, input -> 1.0 <v>;
* the unembedding reads the token slot: input -> logits and 1.0 -> logits (0.0 writes the previous-token slot,
  which the unembedding does not read: no 0.0 -> logits edge);
* heads 0.1 and 1.1 have zero weights: they output zero, so no edge leaves them and nothing entering them matters.

Eight edges in all, exact under any ablation that changes the tokens (the ground truth is declared under
``"patching"``, the ablation :func:`task_pairs` is built for). No LayerNorm, no biases.
"""

from __future__ import annotations

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from mechrepro.groundtruth import GroundTruth
from mechrepro.techniques.edges import Pairs
from mechrepro.techniques.graph import HEAD, INPUT, LOGITS, Dest, Graph, Node

NAME = "handbuilt-induction"
BOS = 0


def hand_built_induction_model(d_vocab: int = 12, n_ctx: int = 16, sharpness: float = 40.0,
                               seed: int = 0) -> HookedTransformer:
    """Layer 0 head 0 is a perfect previous-token head, layer 1 head 0 a perfect induction head.

    Residual stream = [token one-hot (d_vocab) | position one-hot (n_ctx) | previous token one-hot (d_vocab)].
    L0H0: queries read position p, keys position p-1 -> attends to the previous position, and copies that
    position's token into the "previous token" slot. L1H0: queries read the current token, keys the
    previous-token slot -> attends to the position right after an earlier copy of the current token.
    Heads 1 have zero weights (uniform attention). No LayerNorm. ``seed`` only goes into the config (every weight
    is set by hand).
    """
    d_model = 2 * d_vocab + n_ctx
    d_head = max(d_vocab, n_ctx)
    cfg = HookedTransformerConfig(n_layers=2, d_model=d_model, n_heads=2, d_head=d_head, n_ctx=n_ctx,
                                  d_vocab=d_vocab, attn_only=True, normalization_type=None,
                                  positional_embedding_type="standard", default_prepend_bos=False, seed=seed)
    m = HookedTransformer(cfg, move_to_device=False)
    tok, pos, prev = slice(0, d_vocab), slice(d_vocab, d_vocab + n_ctx), slice(d_vocab + n_ctx, d_model)
    eye_v, eye_n = torch.eye(d_vocab), torch.eye(n_ctx)
    scale = sharpness * d_head**0.5  # TransformerLens divides scores by sqrt(d_head)
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        m.W_E[:, tok] = eye_v
        m.W_pos[:, pos] = eye_n
        # L0H0: previous-token head
        m.blocks[0].attn.W_Q[0, pos, :n_ctx] = eye_n * scale ** 0.5
        m.blocks[0].attn.W_K[0, pos, :n_ctx] = torch.roll(eye_n, shifts=1, dims=1) * scale ** 0.5  # key p' -> dim p'+1
        m.blocks[0].attn.W_K[0, pos, 0] = 0.0  # no wrap-around: the last position is nobody's previous
        m.blocks[0].attn.W_V[0, tok, :d_vocab] = eye_v
        m.blocks[0].attn.W_O[0, :d_vocab, prev] = eye_v
        # L1H0: induction head
        m.blocks[1].attn.W_Q[0, tok, :d_vocab] = eye_v * scale ** 0.5
        m.blocks[1].attn.W_K[0, prev, :d_vocab] = eye_v * scale ** 0.5
        m.blocks[1].attn.W_V[0, tok, :d_vocab] = eye_v
        m.blocks[1].attn.W_O[0, :d_vocab, tok] = 3 * eye_v  # outweighs the direct path (current token)
        m.W_U[tok, :] = eye_v
    return m.eval()


def distinct_probes(n: int, length: int, d_vocab: int, bos: int = BOS, seed: int = 0) -> torch.Tensor:
    """[BOS, r, r] with r distinct non-BOS tokens (so each token has exactly one earlier occurrence)."""
    if not 1 <= length <= d_vocab - 1:
        raise ValueError(f"distinct probes of length {length} need 1 <= length <= d_vocab - 1 = {d_vocab - 1}")
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        r = torch.randperm(d_vocab - 1, generator=g)[:length] + 1
        rows.append(torch.cat([torch.tensor([bos]), r, r]))
    return torch.stack(rows)


# (source node, destination) of every ground-truth edge; heads as (layer, head)
EDGES = (
    ((INPUT, None), ("q", (0, 0))), ((INPUT, None), ("k", (0, 0))), ((INPUT, None), ("v", (0, 0))),
    ((HEAD, (0, 0)), ("k", (1, 0))), ((INPUT, None), ("q", (1, 0))), ((INPUT, None), ("v", (1, 0))),
    ((HEAD, (1, 0)), (LOGITS, None)), ((INPUT, None), (LOGITS, None)),
)


def edge_mask(graph: Graph, edges) -> torch.Tensor:
    """Bool [dest node] with the given ((node kind, (layer, head) | None), (dest kind, (layer, head) | None)) set."""
    m = torch.zeros(len(graph.dests), len(graph.nodes), dtype=torch.bool)
    for (nk, nh), (dk, dh) in edges:
        node = Node(INPUT, -1) if nk == INPUT else Node(HEAD, *nh)
        dest = Dest(LOGITS, graph.n_layers) if dk == LOGITS else Dest(dk, *dh)
        m[graph.dest_index[dest], graph.node_index[node]] = True
    return m


def build(d_vocab: int = 12, n_ctx: int = 16, seed: int = 0) -> GroundTruth:
    """The hand-built induction model and its eight ground-truth edges (module docstring)."""
    model = hand_built_induction_model(d_vocab=d_vocab, n_ctx=n_ctx, seed=seed)
    graph = Graph.of(model)
    card = {"how": "weights set by hand (mechrepro.groundtruth.handbuilt): 0.0 previous-token head, 1.0 induction "
                   "head, 0.1 and 1.1 zero; edges read off which residual slots each weight reads and writes",
            "d_vocab": d_vocab, "n_ctx": n_ctx, "seed": seed,
            "task": "[BOS, r, r] with r distinct tokens vs [BOS, r', r'] with fresh ones; metric: summed logit of "
                    "the induction token over the second half"}
    return GroundTruth(NAME, model, edge_mask(graph, EDGES), "patching",
                       {"previous_token": [(0, 0)], "induction": [(1, 0)]}, card)


def task_pairs(model: HookedTransformer, n_prompts: int = 16, seed: int = 0,
               length: int | None = None) -> list[Pairs]:
    """Clean ``[BOS, r, r]`` (``r``: ``length`` distinct non-BOS tokens; default the longest that fits the context
    and the vocabulary) and corrupted ``[BOS, r', r']`` with fresh random ``r'`` (same length). Metric per prompt:
    the sum, over the second-half positions whose next token is known (the second r_i, i < length), of the logit
    of the clean induction token r_{i+1}: linear in the logits. No ``answer_pos`` (every position is read)."""
    c = model.cfg
    n = length if length is not None else min((c.n_ctx - 1) // 2, c.d_vocab - 1)
    if not 2 <= n <= min((c.n_ctx - 1) // 2, c.d_vocab - 1):
        raise ValueError(f"induction pairs of length {n} do not fit this model (n_ctx {c.n_ctx}, d_vocab {c.d_vocab}): "
                         f"need 2 <= length <= {min((c.n_ctx - 1) // 2, c.d_vocab - 1)}")
    clean = distinct_probes(n_prompts, n, c.d_vocab, seed=seed)
    corrupted = distinct_probes(n_prompts, n, c.d_vocab, seed=seed + 1_000_003)
    pos = torch.arange(n + 1, 2 * n)  # second r_1 .. r_{n-1}: each predicts the next token of the second half
    target = clean[:, pos + 1]  # [batch n-1]

    def metric(logits: torch.Tensor) -> torch.Tensor:  # logits [batch pos vocab] -> [batch]
        lp = logits[:, pos.to(logits.device)]
        return lp.gather(-1, target.to(logits.device)[..., None])[..., 0].sum(-1)
    return [Pairs(clean, corrupted, metric)]


__all__ = ["EDGES", "NAME", "build", "distinct_probes", "edge_mask", "hand_built_induction_model", "task_pairs"]
