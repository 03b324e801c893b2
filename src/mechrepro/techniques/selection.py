"""Choosing a circuit from edge scores: top-n and greedy growth from the logits, then pruning.

Hanna et al. 2024 (*Have Faith in Faithfulness*) and the MIB circuit track (Mueller et al. 2025) build a circuit of
n edges either as the n edges of largest |score| (``topn``) or greedily from the logits backwards (``greedy``: start
with the edges into the logits; repeatedly add the best-scoring edge into a node already in the circuit, which
brings that node's own input edges into reach). Either way, an edge into a node that has no path to the logits
changes nothing the metric can see, so :func:`prune` drops such edges (the node is "childless").
"""

from __future__ import annotations

import heapq

import torch
from torch import Tensor

from mechrepro.techniques.graph import LOGITS, Graph

SELECTIONS = ("topn", "greedy")


def prune(graph: Graph, mask: Tensor) -> Tensor:
    """Bool [edge]: ``mask`` without the edges into nodes that have no in-circuit path to the logits."""
    keep = mask.clone().to(torch.bool)
    alive: set = set()
    # Destinations in reverse forward order: when a node's own inputs are reached, every edge out of it (into
    # later destinations) has been seen, so whether it reaches the logits is known.
    by_dest: dict[int, list[int]] = {}
    for e, (d, _) in enumerate(graph.edge_index.tolist()):
        by_dest.setdefault(d, []).append(e)
    for d in sorted(by_dest, reverse=True):
        dest = graph.dests[d]
        feeds = dest.kind == LOGITS or dest.owner in alive
        for e in by_dest[d]:
            if not feeds:
                keep[e] = False
            elif keep[e]:
                alive.add(graph.edges[e][0])
    return keep


def select_topn(graph: Graph, scores: Tensor, n: int) -> Tensor:
    """The ``n`` edges of largest |score| (ties: the earlier edge), pruned."""
    _check_n(graph, n)
    mask = torch.zeros(graph.n_edges, dtype=torch.bool)
    if n:
        order = torch.sort(scores.abs().double(), descending=True, stable=True).indices
        mask[order[:n]] = True
    return prune(graph, mask)


def select_greedy(graph: Graph, scores: Tensor, n: int) -> Tensor:
    """``n`` edges grown from the logits: each step adds the best |score| edge into the logits or into a node
    already in the circuit (every chosen edge then has a path to the logits; nothing to prune)."""
    _check_n(graph, n)
    into: dict = {}
    for e, (_, d) in enumerate(graph.edges):
        into.setdefault(d.owner, []).append(e)  # owner None: the logits
    mag = scores.abs().double().tolist()
    heap = [(-mag[e], e) for e in into[None]]
    heapq.heapify(heap)
    mask = torch.zeros(graph.n_edges, dtype=torch.bool)
    reached = {None}
    while heap and int(mask.sum()) < n:
        _, e = heapq.heappop(heap)
        mask[e] = True
        src = graph.edges[e][0]
        if src not in reached:
            reached.add(src)
            for f in into.get(src, ()):
                heapq.heappush(heap, (-mag[f], f))
    return mask


def select(graph: Graph, scores: Tensor, n: int, how: str = "topn") -> Tensor:
    if how == "topn":
        return select_topn(graph, scores, n)
    if how == "greedy":
        return select_greedy(graph, scores, n)
    raise ValueError(f"unknown selection {how!r}; known: {', '.join(SELECTIONS)}")


def _check_n(graph: Graph, n: int) -> None:
    if not 0 <= n <= graph.n_edges:
        raise ValueError(f"a circuit of {n} edges: the graph has {graph.n_edges}")
