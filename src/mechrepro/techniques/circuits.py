"""Validating a circuit by mean ablation: faithfulness, completeness and minimality.

Wang et al. 2022, *Interpretability in the Wild* §4: a circuit C is a set of attention heads, each acting
at given positions. F(C) is the metric (the logit difference) of the model in which every head output
*outside* C is replaced by its mean over a reference distribution (the ABC prompts), per template and
position; F(M) is the metric of the whole model.

* faithfulness: F(C) / F(M);
* completeness: for subsets K of C, |F(C \\ K) - F(M \\ K)| should stay small (random and greedily chosen K);
* minimality: for each head v of C, some K with |F(C \\ (K ∪ {v})) - F(C \\ K)| large.

Miller et al. 2024 (*Transformer Circuit Faithfulness Metrics are not Robust*) showed that the ablation
protocol alone -- which mean, which positions -- moves IOI faithfulness from under 0% to over 100%, so each
number here is returned with the protocol that produced it (:data:`PROTOCOLS`).

The prompt groups are duck-typed: any object with ``clean`` / ``corrupted`` token tensors [n pos] of one
length, ``positions`` (role -> index) and ``metric(logits) -> scalar`` (a mean over its prompts).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from transformer_lens import HookedTransformer

from mechrepro.techniques.ablation import ablate_masks, mean_head_outputs

Head = tuple[int, int]  # (layer, head)

PROTOCOLS = {
    "paper": "every head outside the circuit, and each circuit head at every position except the one its class "
             "acts at (END for name movers and S-inhibition, S2 for induction and duplicate-token, S1+1 for "
             "previous-token heads), is replaced by its mean output over the ABC prompts of the same template "
             "and order, position by position (Wang et al.'s code, SEQ_POS_TO_KEEP)",
    "all_positions": "every head outside the circuit is replaced by its mean output over the ABC prompts of the "
                     "same template and order, position by position; circuit heads are kept at every position",
}


@dataclass(frozen=True)
class Circuit:
    """Heads by class, and the role (a key of the groups' ``positions``) at which each class acts."""

    classes: dict[str, tuple[Head, ...]]
    positions: dict[str, str]

    @property
    def heads(self) -> list[Head]:
        return sorted({h for hs in self.classes.values() for h in hs})

    def class_of(self, head: Head) -> str:
        return next(c for c, hs in self.classes.items() if head in hs)

    def check(self, model: HookedTransformer) -> None:
        for cls, heads in self.classes.items():
            if heads and cls not in self.positions:
                raise ValueError(f"circuit class {cls!r} has no position to act at")
            for layer, head in heads:
                if not (0 <= layer < model.cfg.n_layers and 0 <= head < model.cfg.n_heads):
                    raise ValueError(f"circuit head {layer}.{head} ({cls}) is outside this model "
                                     f"({model.cfg.n_layers} layers x {model.cfg.n_heads} heads)")


def keep_mask(model: HookedTransformer, circuit: Circuit, positions: dict[str, int], n_pos: int, protocol: str,
              removed: Iterable[Head] = ()) -> Tensor:
    """[layer pos head] True where a head output is kept (not mean-ablated) for circuit minus ``removed``."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {list(PROTOCOLS)}, got {protocol!r}")
    removed = set(removed)
    keep = torch.zeros(model.cfg.n_layers, n_pos, model.cfg.n_heads, dtype=torch.bool)
    for cls, heads in circuit.classes.items():
        for layer, head in heads:
            if (layer, head) in removed:
                continue
            if protocol == "all_positions":
                keep[layer, :, head] = True
            else:
                keep[layer, positions[circuit.positions[cls]], head] = True
    return keep


def model_minus(model: HookedTransformer, n_pos: int, removed: Iterable[Head]) -> Tensor:
    """[layer pos head] keep-mask of the whole model with ``removed`` heads mean-ablated at every position."""
    keep = torch.ones(model.cfg.n_layers, n_pos, model.cfg.n_heads, dtype=torch.bool)
    for layer, head in removed:
        keep[layer, :, head] = False
    return keep


class Evaluator:
    """F(keep-mask) over prompt groups, with each group's ABC means computed once."""

    def __init__(self, model: HookedTransformer, groups: Sequence):
        self.model, self.groups = model, list(groups)
        self.means = [mean_head_outputs(model, g.corrupted.to(model.cfg.device)) for g in self.groups]  # ABC means
        self.weights = np.array([len(g.clean) for g in self.groups], dtype=float)
        self.weights /= self.weights.sum()
        self.full = self.metric(lambda g: model_minus(model, g.clean.shape[1], ()))  # F(M)
        if not np.isfinite(self.full) or self.full == 0:
            raise ValueError(f"the model's metric F(M) is {self.full}: faithfulness is undefined")

    def metrics(self, mask_fns: Sequence) -> np.ndarray:
        """F for each ``mask_fn(group) -> keep-mask [layer pos head]``, prompt-weighted over the groups."""
        out = np.zeros(len(mask_fns))
        for g, mean, w in zip(self.groups, self.means, self.weights, strict=True):
            masks = torch.stack([~fn(g) for fn in mask_fns])  # True = ablate
            vals = ablate_masks(self.model, g.clean, masks, g.metric, replacement=mean)
            out += w * np.array([float(v) for v in vals])
        if not np.isfinite(out).all():
            raise ValueError("the metric of an ablated model is NaN or inf")
        return out

    def metric(self, mask_fn) -> float:
        return float(self.metrics([mask_fn])[0])

    def circuit(self, circuit: Circuit, protocol: str, removed: Iterable[Head] = ()):
        removed = tuple(removed)
        return lambda g: keep_mask(self.model, circuit, g.positions, g.clean.shape[1], protocol, removed)

    def without(self, removed: Iterable[Head]):
        removed = tuple(removed)
        return lambda g: model_minus(self.model, g.clean.shape[1], removed)


def faithfulness(ev: Evaluator, circuit: Circuit, protocol: str) -> dict:
    f_c = ev.metric(ev.circuit(circuit, protocol))
    return {"protocol": protocol, "protocol_text": PROTOCOLS[protocol], "F_C": f_c, "F_M": ev.full,
            "faithfulness": f_c / ev.full, "n_heads": len(circuit.heads)}


def completeness(ev: Evaluator, circuit: Circuit, protocol: str, n_random: int, greedy_k: int, seed: int
                 ) -> list[dict]:
    """Rows (kind, K, F(C\\K), F(M\\K), incompleteness |F(C\\K) - F(M\\K)| / F(M)) for: the empty set, each whole
    class, ``n_random`` random subsets (each head kept with probability 1/2), and a greedy K grown one head
    at a time (up to ``greedy_k``) to maximise the incompleteness (Wang et al. §4.2)."""
    heads = circuit.heads
    rng = np.random.default_rng(seed)
    sets: list[tuple[str, tuple[Head, ...]]] = [("empty", ())]
    sets += [(f"class:{c}", tuple(hs)) for c, hs in circuit.classes.items() if hs]
    for _ in range(n_random):
        sets.append(("random", tuple(h for h in heads if rng.random() < 0.5)))
    rows = _completeness_rows(ev, circuit, protocol, sets)
    chosen: tuple[Head, ...] = ()
    for _ in range(min(greedy_k, len(heads))):
        candidates = [chosen + (h,) for h in heads if h not in chosen]
        trial = _completeness_rows(ev, circuit, protocol, [("greedy", k) for k in candidates])
        i = int(np.argmax([r["incompleteness"] for r in trial]))
        rows.append(trial[i])
        chosen = candidates[i]
    return rows


def _completeness_rows(ev: Evaluator, circuit: Circuit, protocol: str, sets) -> list[dict]:
    f_c = ev.metrics([ev.circuit(circuit, protocol, k) for _, k in sets])
    f_m = ev.metrics([ev.without(k) for _, k in sets])
    return [{"kind": kind, "K": " ".join(f"{a}.{b}" for a, b in k), "size": len(k), "F_C_minus_K": fc,
             "F_M_minus_K": fm, "incompleteness": abs(fc - fm) / abs(ev.full)}
            for (kind, k), fc, fm in zip(sets, f_c, f_m, strict=True)]


def minimality(ev: Evaluator, circuit: Circuit, protocol: str) -> list[dict]:
    """For each head v of the circuit: |F(C \\ (K ∪ {v})) - F(C \\ K)| / F(M) for K empty and for K = the other
    heads of v's class (Wang et al. choose K per class by hand, Table 2); the larger is v's score."""
    sets = []
    for v in circuit.heads:
        others = tuple(h for h in circuit.classes[circuit.class_of(v)] if h != v)
        for k in ((), others) if others else ((),):
            sets.append((v, k))
    with_v = ev.metrics([ev.circuit(circuit, protocol, k + (v,)) for v, k in sets])
    without_v = ev.metrics([ev.circuit(circuit, protocol, k) for v, k in sets])
    best: dict[Head, dict] = {}
    for (v, k), a, b in zip(sets, with_v, without_v, strict=True):
        score = abs(a - b) / abs(ev.full)
        if v not in best or score > best[v]["minimality"]:
            best[v] = {"head": f"{v[0]}.{v[1]}", "class": circuit.class_of(v), "K": " ".join(f"{x}.{y}" for x, y in k),
                       "F_C_minus_K": b, "F_C_minus_K_and_v": a, "minimality": score}
    return [best[v] for v in circuit.heads]
