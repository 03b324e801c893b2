"""Models whose circuit is known, to score circuit-discovery methods against.

Conmy et al. 2023 (*Towards Automated Circuit Discovery*, ACDC) score methods by ROC AUC against circuits that are
known by construction: tracr-compiled programs; Gupta et al. 2024 (*InterpBench*) train small transformers with
strict interchange-intervention training so that a given high-level circuit is the mechanism. Here:

* :mod:`.tracr` -- RASP programs (``reverse``, ``frac_prevs``) compiled by tracr and converted to TransformerLens;
  the ground truth read off the compiled weights (which residual subspaces each component writes and reads);
* :mod:`.planted_ioi` -- an attention-only model trained with interchange interventions against the IOI graph
  duplicate-token -> S-inhibition -> name mover, each mapped to a chosen head;
* :mod:`.handbuilt` -- weights set by hand so that named heads are a perfect previous-token and induction head.

Each builds a :class:`GroundTruth`: the model, its circuit as a boolean mask over the edges of
:class:`~mechrepro.techniques.graph.Graph`, the ablation under which that circuit is exact (Miller et al. 2024,
*Transformer Circuit Faithfulness Metrics are not Robust*: a method scored under another ablation than the one the
ground truth was defined with can look wrong when it is not), the planted heads by class, and a card. Each module
also rebuilds its task (clean / corrupted prompts and a per-prompt metric) from the model and its config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from jaxtyping import Bool
from torch import Tensor
from transformer_lens import HookedTransformer, HookedTransformerConfig

from mechrepro.io import atomic_path, load_tensors, read_json, save_tensors, write_json
from mechrepro.techniques.graph import HEAD, INPUT, LOGITS, MLP, Graph

# The HookedTransformerConfig keys a ground-truth model is rebuilt from (all JSON-able).
_CFG_KEYS = ("n_layers", "d_model", "n_heads", "d_head", "d_mlp", "n_ctx", "d_vocab", "d_vocab_out", "act_fn",
             "attn_only", "normalization_type", "positional_embedding_type", "default_prepend_bos", "attention_dir",
             "seed")


@dataclass
class GroundTruth:
    """A model with a known circuit.

    ``edges``: bool [dest node] in the layout of ``Graph.of(model).adjacency`` (True: in the circuit);
    ``ablation``: what the circuit is exact under (``"zero"``, ``"patching"`` or ``"mean"``, as in
    :data:`mechrepro.techniques.edges.ABLATIONS`); ``classes``: planted heads by class (e.g. IOI's ``name_mover``),
    empty where the ground truth has no classes; ``card``: how the model was made and what it reached."""

    name: str
    model: HookedTransformer
    edges: Bool[Tensor, "dest node"]
    ablation: str
    classes: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    card: dict = field(default_factory=dict)

    def __post_init__(self):
        graph = self.graph
        if tuple(self.edges.shape) != tuple(graph.adjacency.shape):
            raise ValueError(f"ground truth {self.name!r}: edges must be [{len(graph.dests)} {len(graph.nodes)}], "
                             f"got {tuple(self.edges.shape)}")
        if (self.edges & ~graph.adjacency).any():
            raise ValueError(f"ground truth {self.name!r}: some edges are not edges of the model's graph")
        c = self.model.cfg
        for cls, heads in self.classes.items():
            for layer, head in heads:
                if not (0 <= layer < c.n_layers and 0 <= head < c.n_heads):
                    raise ValueError(f"ground truth {self.name!r}: planted {cls} head {layer}.{head} is outside the "
                                     f"model ({c.n_layers} layers x {c.n_heads} heads)")

    @property
    def graph(self) -> Graph:
        return Graph.of(self.model)

    def edge_labels(self) -> Bool[Tensor, " edge"]:
        """The ground truth per edge, in :attr:`Graph.edges` order."""
        g = self.graph
        return self.edges[g.edge_index[:, 0], g.edge_index[:, 1]]

    def node_labels(self) -> dict[str, bool]:
        """Per head and MLP (by name): whether any ground-truth edge leaves or enters it."""
        return node_labels(self.graph, self.edges)

    def save(self, out_dir: str | Path) -> None:
        """``weights.safetensors``, ``config.json``, ``edges.csv`` (every edge of the graph, with an ``in_circuit``
        column) and ``card.json``; the card is written last, so a directory with a card is complete."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        save_tensors(out / "weights.safetensors", dict(self.model.state_dict()))
        write_json(out / "config.json", {k: getattr(self.model.cfg, k) for k in _CFG_KEYS})
        table = pd.DataFrame(self.graph.edge_table()).assign(in_circuit=self.edge_labels().tolist())
        with atomic_path(out / "edges.csv") as tmp:
            table.to_csv(tmp, index=False)
        write_json(out / "card.json", {**self.card, "name": self.name, "ablation": self.ablation,
                                       "classes": {k: [list(h) for h in v] for k, v in self.classes.items()},
                                       "n_edges": int(self.graph.n_edges), "n_circuit_edges": int(self.edges.sum())})

    @classmethod
    def load(cls, out_dir: str | Path, device: str = "cpu") -> GroundTruth:
        out = Path(out_dir)
        if not (out / "card.json").exists():
            raise FileNotFoundError(f"no ground-truth model in {out} (card.json missing: not built, or its build "
                                    f"did not finish)")
        card = read_json(out / "card.json")
        model = HookedTransformer(HookedTransformerConfig(**read_json(out / "config.json"), device=device),
                                  move_to_device=False)
        model.load_state_dict(load_tensors(out / "weights.safetensors"))
        model.eval()
        graph = Graph.of(model)
        table = pd.read_csv(out / "edges.csv")
        if len(table) != graph.n_edges:
            raise ValueError(f"{out / 'edges.csv'} has {len(table)} edges; the model's graph {graph.n_edges}")
        edges = graph.to_mask(torch.tensor(table["in_circuit"].to_numpy(dtype=bool)))
        classes = {k: [tuple(h) for h in v] for k, v in card.pop("classes").items()}
        name, ablation = card.pop("name"), card.pop("ablation")
        for k in ("n_edges", "n_circuit_edges"):
            card.pop(k, None)
        return cls(name, model.to(device), edges, ablation, classes, card)


def node_labels(graph: Graph, edges: Bool[Tensor, "dest node"]) -> dict[str, bool]:
    """Per head and MLP (by name, in graph order): whether any edge of ``edges`` leaves or enters it."""
    out = {}
    for j, node in enumerate(graph.nodes):
        if node.kind not in (HEAD, MLP):
            continue
        into = [i for i, d in enumerate(graph.dests) if d.kind != LOGITS and d.owner == node]
        out[node.name] = bool(edges[:, j].any() or edges[into].any())
    return out


__all__ = ["GroundTruth", "INPUT", "node_labels"]
