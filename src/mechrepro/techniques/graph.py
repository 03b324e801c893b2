"""The computational graph of a TransformerLens model, as edge-level circuit discovery sees it.

Elhage et al. 2021 (*A Mathematical Framework for Transformer Circuits*): the residual stream is a sum, so the
input of every component is the sum of the outputs of the components before it. That makes a graph:

* **upstream nodes** (whose output is written to the residual stream): the input embedding (``blocks.0.hook_resid_pre``:
  token plus position embedding), every attention head (its ``z @ W_O``, without the layer's ``b_O``), every MLP
  (``hook_mlp_out``);
* **destinations** (which read the residual stream): each head's query, key and value inputs separately
  (``hook_q_input`` / ``hook_k_input`` / ``hook_v_input``: the convention of Hanna et al. 2024, *Have Faith in
  Faithfulness*, and of the MIB circuit track), each MLP's input (``hook_mlp_in``), and the logits (the final residual
  stream, before ``ln_final``);
* an **edge** from every upstream node to every destination after it: a head's inputs read the input embedding and
  every head and MLP of earlier layers; an MLP also reads the heads of its own layer.

A 2-layer, 4-head model with MLPs has 110 edges; GPT-2 small 32,491 (the count MIB uses). The only terms of a
destination's input that belong to no node are the attention output biases ``b_O`` of the layers before it: they are
the same in every run, so no patch moves them (:func:`bias_into`). ``tests/test_graph.py`` checks that the
contributions and these biases sum to each destination's actual input.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens import HookedTransformer

INPUT, HEAD, MLP, LOGITS = "input", "head", "mlp", "logits"
QKV = ("q", "k", "v")


@dataclass(frozen=True, order=True)
class Node:
    """An upstream node: ``kind`` input / head / mlp; ``layer`` -1 for the input; ``head`` for heads only."""

    kind: str
    layer: int
    head: int | None = None

    @property
    def name(self) -> str:
        return {INPUT: "input", HEAD: f"{self.layer}.{self.head}", MLP: f"MLP {self.layer}"}[self.kind]


@dataclass(frozen=True, order=True)
class Dest:
    """A destination: ``kind`` q / k / v (of ``layer``.``head``), mlp (of ``layer``) or logits."""

    kind: str
    layer: int
    head: int | None = None

    @property
    def name(self) -> str:
        if self.kind in QKV:
            return f"{self.layer}.{self.head}<{self.kind}>"
        return f"MLP {self.layer}" if self.kind == MLP else "logits"

    @property
    def owner(self) -> Node | None:
        """The node this destination feeds (None for the logits)."""
        if self.kind in QKV:
            return Node(HEAD, self.layer, self.head)
        return Node(MLP, self.layer) if self.kind == MLP else None


def check_supported(model: HookedTransformer) -> None:
    """Refuse, before any compute, models whose inputs are not the plain sum this graph assumes."""
    c = model.cfg
    problems = []
    if c.n_key_value_heads is not None and c.n_key_value_heads != c.n_heads:
        problems.append(f"grouped-query attention ({c.n_key_value_heads} key/value heads for {c.n_heads} heads): "
                        "keys and values are shared across heads, so a head's k/v input is not its own")
    if c.parallel_attn_mlp:
        problems.append("parallel attention and MLP: an MLP does not read its own layer's heads")
    if c.use_attn_in or c.use_attn_result:
        problems.append("use_attn_in / use_attn_result must be off (the graph builds these inputs itself)")
    if c.use_normalization_before_and_after:
        problems.append("normalisation after the attention and MLP outputs: a node's output is not what it writes")
    blk = model.blocks[0]
    if not all(hasattr(blk, f"hook_{k}_input") for k in QKV) or not hasattr(blk, "hook_mlp_in"):
        problems.append("the blocks lack the split-qkv hooks (hook_q_input / hook_k_input / hook_v_input, "
                        "hook_mlp_in)")
    if problems:
        raise ValueError(f"edge-level circuit discovery does not support {c.model_name or 'this model'}: "
                         + "; ".join(problems))


@dataclass(frozen=True)
class Graph:
    """The nodes, destinations and edges of a model of ``n_layers`` x ``n_heads`` (with or without MLPs)."""

    n_layers: int
    n_heads: int
    has_mlp: bool

    @classmethod
    def of(cls, model: HookedTransformer) -> Graph:
        check_supported(model)
        return cls(model.cfg.n_layers, model.cfg.n_heads, not model.cfg.attn_only)

    @cached_property
    def nodes(self) -> tuple[Node, ...]:
        """Upstream nodes in forward order: the input, then per layer its heads and its MLP."""
        out = [Node(INPUT, -1)]
        for la in range(self.n_layers):
            out += [Node(HEAD, la, h) for h in range(self.n_heads)]
            out += [Node(MLP, la)] if self.has_mlp else []
        return tuple(out)

    @cached_property
    def dests(self) -> tuple[Dest, ...]:
        """Destinations in forward order: per layer the q, k, v inputs of each head and the MLP input; the logits."""
        out = []
        for la in range(self.n_layers):
            out += [Dest(k, la, h) for k in QKV for h in range(self.n_heads)]
            out += [Dest(MLP, la)] if self.has_mlp else []
        return (*out, Dest(LOGITS, self.n_layers))

    @cached_property
    def node_index(self) -> dict[Node, int]:
        return {n: i for i, n in enumerate(self.nodes)}

    @cached_property
    def dest_index(self) -> dict[Dest, int]:
        return {d: i for i, d in enumerate(self.dests)}

    @cached_property
    def adjacency(self) -> Tensor:
        """Bool [dest node]: True where the node's output reaches the destination (an edge)."""
        adj = torch.zeros(len(self.dests), len(self.nodes), dtype=torch.bool)
        for i, d in enumerate(self.dests):
            for j, n in enumerate(self.nodes):
                adj[i, j] = reaches(n, d)
        return adj

    @property
    def n_edges(self) -> int:
        return int(self.adjacency.sum())

    @cached_property
    def edges(self) -> tuple[tuple[Node, Dest], ...]:
        """Every edge, in the order of :meth:`edge_index` (destination-major, then upstream node)."""
        return tuple((self.nodes[j], self.dests[i]) for i, j in self.adjacency.nonzero().tolist())

    @cached_property
    def edge_index(self) -> Tensor:
        """Long [edge 2]: (dest index, node index) of each edge, as in :attr:`edges`."""
        return self.adjacency.nonzero()

    def edge_name(self, e: int) -> str:
        n, d = self.edges[e]
        return f"{n.name} -> {d.name}"

    def dests_at(self, layer: int, kind: str) -> list[int]:
        """Indices of the destinations of ``kind`` (q / k / v: one per head, in head order; mlp) at ``layer``."""
        if kind in QKV:
            return [self.dest_index[Dest(kind, layer, h)] for h in range(self.n_heads)]
        return [self.dest_index[Dest(kind, layer)]]

    def nodes_at(self, layer: int, kind: str) -> list[int]:
        if kind == HEAD:
            return [self.node_index[Node(HEAD, layer, h)] for h in range(self.n_heads)]
        return [self.node_index[Node(kind, layer)]] if kind == MLP else [0]

    def to_mask(self, edge_mask: Tensor) -> Tensor:
        """Bool [edge] -> bool [dest node]."""
        m = torch.zeros(len(self.dests), len(self.nodes), dtype=torch.bool)
        m[self.edge_index[:, 0], self.edge_index[:, 1]] = edge_mask.to(torch.bool)
        return m

    def edge_table(self) -> list[dict]:
        """One row per edge with explicit columns (no names to parse back)."""
        return [{"edge": self.edge_name(e), "src_kind": n.kind, "src_layer": n.layer,
                 "src_head": -1 if n.head is None else n.head, "dst_kind": d.kind, "dst_layer": d.layer,
                 "dst_head": -1 if d.head is None else d.head} for e, (n, d) in enumerate(self.edges)]


def reaches(n: Node, d: Dest) -> bool:
    """Whether node ``n``'s output is part of destination ``d``'s input."""
    if n.kind == INPUT or d.kind == LOGITS:
        return True
    if d.kind == MLP:  # an MLP reads its own layer's heads (after the attention) and everything before
        return n.layer < d.layer or (n.layer == d.layer and n.kind == HEAD)
    return n.layer < d.layer


def node_outputs(model: HookedTransformer, cache) -> Float[Tensor, "node batch pos d_model"]:
    """Every upstream node's output from a cache holding ``blocks.0.hook_resid_pre``, each layer's ``hook_z`` and
    (with MLPs) ``hook_mlp_out``."""
    c = model.cfg
    out = [cache["blocks.0.hook_resid_pre"][None]]
    for la in range(c.n_layers):
        z = cache[f"blocks.{la}.attn.hook_z"]  # [batch pos head d_head]
        out.append(torch.einsum("bphe,hed->hbpd", z, model.W_O[la]))
        if not c.attn_only:
            out.append(cache[f"blocks.{la}.hook_mlp_out"][None])
    return torch.cat(out)


def output_hook_names(model: HookedTransformer) -> list[str]:
    c = model.cfg
    names = ["blocks.0.hook_resid_pre"] + [f"blocks.{la}.attn.hook_z" for la in range(c.n_layers)]
    return names + ([] if c.attn_only else [f"blocks.{la}.hook_mlp_out" for la in range(c.n_layers)])


def dest_hook(graph: Graph, layer: int, kind: str) -> str:
    """The hook whose activation is the input of the destinations of ``kind`` at ``layer``."""
    if kind == LOGITS:
        return f"blocks.{graph.n_layers - 1}.hook_resid_post"
    return f"blocks.{layer}.hook_{'mlp_in' if kind == MLP else kind + '_input'}"


def dest_groups(graph: Graph) -> list[tuple[str, int, str, list[int]]]:
    """(hook name, layer, kind, destination indices) for every destination hook, in forward order."""
    out = []
    for la in range(graph.n_layers):
        out += [(dest_hook(graph, la, k), la, k, graph.dests_at(la, k)) for k in QKV]
        if graph.has_mlp:
            out.append((dest_hook(graph, la, MLP), la, MLP, graph.dests_at(la, MLP)))
    return out + [(dest_hook(graph, graph.n_layers, LOGITS), graph.n_layers, LOGITS, [len(graph.dests) - 1])]


def bias_into(model: HookedTransformer, graph: Graph) -> Float[Tensor, "dest d_model"]:
    """The part of each destination's input that belongs to no node: the ``b_O`` of every attention layer before it."""
    b_o = model.b_O  # [layer d_model]
    out = torch.zeros(len(graph.dests), model.cfg.d_model, dtype=b_o.dtype, device=b_o.device)
    for i, d in enumerate(graph.dests):
        upto = d.layer + 1 if d.kind == MLP else d.layer  # an MLP reads its own layer's attention output
        out[i] = b_o[:upto].sum(0)
    return out


class split_inputs:
    """Context manager: turn on the split q/k/v input and MLP input hooks, and restore the model's settings after."""

    def __init__(self, model: HookedTransformer):
        self.model = model

    def __enter__(self):
        c = self.model.cfg
        self.saved = (c.use_split_qkv_input, c.use_hook_mlp_in)
        self.model.set_use_split_qkv_input(True)
        if not c.attn_only:
            self.model.set_use_hook_mlp_in(True)
        return self.model

    def __exit__(self, *exc):
        self.model.set_use_split_qkv_input(self.saved[0])
        if not self.model.cfg.attn_only:
            self.model.set_use_hook_mlp_in(self.saved[1])
        return False
