"""Bricken et al. 2023's two measures of "more interpretable than neurons", with the corpus's latent variables as the
interpretations (*Towards Monosemanticity*, "Feature interpretability" and "Automated interpretability").

* **Specificity**: of everything a unit fires, the share that falls where its interpretation holds -- the paper's
  activation-weighted specificity plots, with the corpus's recorded latents as the proxy. For each latent, the
  unit of a family (the neurons, a dictionary) that is most specific to it on one half of the held-out documents,
  measured on the other half. AUROC (:func:`mechrepro.sae.evaluate.ground_truth`) rewards a unit that fires on
  everything a latent touches, which is what a polysemantic neuron does; specificity asks the paper's question.
* **Automated interpretability** (Bills et al. 2023, *Language models can explain neurons in language models*):
  explain a unit, simulate its activations from the explanation, score the Pearson correlation of simulated and
  true activations on held-out tokens. Here the explanations are the latents and their conjunctions of two, and the
  simulation is "active where the explanation holds, zero elsewhere" (Pearson is blind to the activation's scale,
  so no constant is fitted). The explanation is chosen on one half, scored on the other.

The halves split the documents, not the tokens, so that a document's repeated contexts cannot be in both.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

# A unit counts as a detector of a latent only if it fires on at least this share of the latent's tokens in the
# selection half: without a floor, a unit that fired once, on the right token, would be "perfectly specific".
# Fixed before the run (issue 20), stated in replications/monosemanticity/claims.yaml.
MIN_RECALL = 0.1
# A conjunction is an explanation only if it holds on at least this many tokens of the selection half.
MIN_EXPLANATION_TOKENS = 5


@dataclass(frozen=True)
class Halves:
    """Token indices (into the flattened [doc pos] activations) of the selection and the measurement half."""

    select: Tensor
    measure: Tensor

    @classmethod
    def by_document(cls, n_docs: int, n_pos: int, seed: int = 0) -> Halves:
        if n_docs < 2:
            raise ValueError(f"need at least 2 documents to split into halves, got {n_docs}")
        order = torch.randperm(n_docs, generator=torch.Generator().manual_seed(seed))
        docs = order[: n_docs // 2].sort().values, order[n_docs // 2:].sort().values
        pos = torch.arange(n_pos)
        a, b = ((d[:, None] * n_pos + pos[None, :]).flatten() for d in docs)
        return cls(a, b)


def activation_weighted_precision(acts: Float[Tensor, "token unit"],
                                  labels: Bool[Tensor, "token latent"]) -> Float[Tensor, "unit latent"]:
    """Per unit and latent: the share of the unit's positive activation on tokens carrying the latent (NaN for a
    unit that never fires)."""
    pos = acts.clamp(min=0).double()
    mass = pos.sum(0)  # [unit]
    on = pos.T @ labels.double()  # [unit latent]
    return (on / mass[:, None]).where(mass[:, None] > 0, torch.full_like(on, math.nan)).float()


def firing_recall(acts: Float[Tensor, "token unit"], labels: Bool[Tensor, "token latent"]) -> Float[Tensor, "unit latent"]:
    """Per unit and latent: the share of the latent's tokens the unit fires on (activation > 0)."""
    fires = (acts > 0).double()
    return ((fires.T @ labels.double()) / labels.double().sum(0).clamp(min=1)).float()


def qualified_precision(acts: Float[Tensor, "token unit"], labels: Bool[Tensor, "token latent"]
                        ) -> tuple[Float[Tensor, "unit latent"], Float[Tensor, "unit latent"]]:
    """(precision, recall) per unit and latent, precision set to -1 where the unit does not qualify as a detector
    of the latent (fires on fewer than :data:`MIN_RECALL` of its tokens, or never): argmax picks a qualified unit."""
    prec, rec = activation_weighted_precision(acts, labels), firing_recall(acts, labels)
    return prec.where((rec >= MIN_RECALL) & ~prec.isnan(), torch.tensor(-1.0)), rec


def specificity(units: dict[str, Float[Tensor, "token unit"]], labels: dict[str, Bool[Tensor, " token"]],
                halves: Halves) -> list[dict]:
    """One row per latent and unit family: the family's most specific unit on the selection half (among units that
    fire on at least :data:`MIN_RECALL` of the latent there), its precision on the selection and on the measurement
    half, and its recall there. ``None`` where no unit of the family qualifies, or the latent is absent from a half."""
    names = list(labels)
    y = torch.stack([labels[n] for n in names], dim=1)  # [token latent]
    ya, yb = y[halves.select], y[halves.measure]
    rows = []
    for family, acts in units.items():
        a, b = acts[halves.select], acts[halves.measure]
        prec_a, _ = qualified_precision(a, ya)  # [unit latent]
        prec_b, rec_b = activation_weighted_precision(b, yb), firing_recall(b, yb)
        for j, latent in enumerate(names):
            row = {"latent": latent, "family": family, "unit": None, "precision_select": None,
                   "precision": None, "recall": None}
            if (prec_a[:, j] >= 0).any() and ya[:, j].any() and yb[:, j].any():
                u = int(prec_a[:, j].argmax())
                p = float(prec_b[u, j])
                row.update(unit=u, precision_select=float(prec_a[u, j]), precision=None if math.isnan(p) else p,
                           recall=float(rec_b[u, j]))
            rows.append(row)
    return rows


def explanations(labels: dict[str, Bool[Tensor, " token"]], select: Tensor) -> tuple[list[str], Bool[Tensor, "token expl"]]:
    """The explanation vocabulary: every latent, and every conjunction of two that holds on at least
    :data:`MIN_EXPLANATION_TOKENS` tokens of the selection half (and not on all of them)."""
    names, cols = [], []
    items = list(labels.items())
    for name, y in items:
        names.append(name)
        cols.append(y)
    for (n1, y1), (n2, y2) in itertools.combinations(items, 2):
        both = y1 & y2
        k = int(both[select].sum())
        if MIN_EXPLANATION_TOKENS <= k < len(select):
            names.append(f"{n1} & {n2}")
            cols.append(both)
    return names, torch.stack(cols, dim=1)


def _zscore(x: Tensor) -> Tensor:
    x = x.double()
    x = x - x.mean(0, keepdim=True)
    sd = x.norm(dim=0, keepdim=True)
    return x / sd.where(sd > 0, torch.ones_like(sd))


def correlations(acts: Float[Tensor, "token unit"], explain: Bool[Tensor, "token expl"]) -> Float[Tensor, "unit expl"]:
    """Pearson correlation of each unit's activations with each explanation's simulation (0 where either is
    constant). One matrix product over standardized columns."""
    return (_zscore(acts).T @ _zscore(explain.float())).float()


def automated_interpretability(units: dict[str, Float[Tensor, "token unit"]], labels: dict[str, Bool[Tensor, " token"]],
                               halves: Halves, chunk: int = 2048) -> list[dict]:
    """One row per live unit (fires on both halves) of each family: its best explanation on the selection half and
    the held-out Pearson score of that explanation's simulation on the measurement half."""
    names, x = explanations(labels, halves.select)
    xa, xb = x[halves.select], x[halves.measure]
    rows = []
    for family, acts in units.items():
        for lo in range(0, acts.shape[1], chunk):  # chunks of units: [token chunk] standardized copies stay small
            a, b = acts[halves.select, lo:lo + chunk], acts[halves.measure, lo:lo + chunk]
            live = ((a > 0).any(0) & (b > 0).any(0)).nonzero().flatten()
            if not len(live):
                continue
            chosen = correlations(a[:, live], xa).max(1)  # [live]: the best explanation on the selection half
            zb, xz = _zscore(b[:, live]), _zscore(xb.float())
            held = (zb * xz[:, chosen.indices]).sum(0)  # [live]: its simulation's Pearson on the measurement half
            for u, e, s_a, s in zip(live.tolist(), chosen.indices.tolist(), chosen.values.tolist(), held.tolist(),
                                    strict=True):
                rows.append({"family": family, "unit": lo + u, "explanation": names[e], "score_select": s_a,
                             "score": s})
    return rows


def summarize(spec: list[dict], auto: list[dict], feature_family: str, neuron_family: str = "neurons",
              top_k: int = 20) -> dict:
    """The claims' numbers: the median over latents of (feature precision - neuron precision), each measured on the
    measurement half; the median held-out automated-interpretability score of the features and of the neurons, over
    every live unit and over the ``top_k`` units each family ranks highest on the selection half."""
    out: dict = {}
    by = {(r["latent"], r["family"]): r for r in spec}
    gaps = [by[(lat, feature_family)]["precision"] - by[(lat, neuron_family)]["precision"]
            for lat in dict.fromkeys(r["latent"] for r in spec)
            if by[(lat, feature_family)]["precision"] is not None and by[(lat, neuron_family)]["precision"] is not None]
    out["specificity.n_latents"] = len(gaps)
    out["specificity.median_gap"] = float(np.median(gaps)) if gaps else None
    for fam, key in ((feature_family, "sae"), (neuron_family, "neuron")):
        v = [r["precision"] for r in spec if r["family"] == fam and r["precision"] is not None]
        out[f"specificity.median_{key}"] = float(np.median(v)) if v else None
    for fam, key in ((feature_family, "sae"), (neuron_family, "neuron")):
        ranked = sorted((r for r in auto if r["family"] == fam), key=lambda r: -r["score_select"])
        scores = [r["score"] for r in ranked]
        out[f"autointerp.n_live_{key}"] = len(scores)
        out[f"autointerp.median_{key}"] = float(np.median(scores)) if scores else None
        out[f"autointerp.top_median_{key}"] = float(np.median(scores[:top_k])) if scores else None
    for which in ("median", "top_median"):
        f, n = out[f"autointerp.{which}_sae"], out[f"autointerp.{which}_neuron"]
        out[f"autointerp.{which}_gap"] = None if f is None or n is None else f - n
    out["autointerp.top_k"] = top_k
    return out


__all__ = ["Halves", "MIN_EXPLANATION_TOKENS", "MIN_RECALL", "activation_weighted_precision",
           "automated_interpretability", "correlations", "explanations", "firing_recall", "qualified_precision",
           "specificity", "summarize"]
