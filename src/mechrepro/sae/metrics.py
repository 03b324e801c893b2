"""SAE evaluation metrics: Bricken et al. 2023, *Towards Monosemanticity: Decomposing Language Models With
Dictionary Learning* (transformer-circuits.pub).

Pure functions on tensors, nothing here trains or runs a model:

- sparsity and reconstruction: L0 (mean number of active features per token), the fraction of variance
  unexplained (FVU), and the cross-entropy loss recovered when the SAE's reconstruction replaces the MLP
  output (computed as in Neel Nanda's open replication of the paper: zero ablation is the 0% baseline);
- feature density (the paper's "Feature Density" histograms of log10 firing frequency), dead and dense features;
- ground-truth monosemanticity: exact ROC AUC of each unit (SAE feature or MLP neuron) as a detector of a
  latent property of the corpus, and the best unit per latent;
- feature splitting across dictionary sizes (decoder cosine similarities) and the mean max cosine similarity
  (MMCS) against reference directions (Sharkey, Braun & Millidge 2022, the toy-data check the paper builds on);
- top-activating contexts for one feature and an HTML snippet that renders one (every token escaped).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from mechrepro.report import visible

# Not a number from Bricken et al., whose density histograms are read by eye: "dense" = firing on more than 10% of
# tokens is the cut later SAE evaluations use for the dense, hard-to-interpret features. A parameter everywhere.
DENSE_THRESHOLD = 0.1
# Ours, not the paper's: decoder directions with cosine >= 0.5 count as a split "child" of a small-dictionary feature
# (two random directions in d_mlp = 2048 dimensions have cosine ~ N(0, 1/2048), so 0.5 is far above chance).
MATCH_THRESHOLD = 0.5


def _finite(name: str, t: Tensor) -> None:
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or inf")


# -- sparsity and reconstruction -----------------------------------------------------------------------------------

def l0(feature_acts: Float[Tensor, "... d_sae"]) -> float:
    """Mean number of non-zero features per token (the L0 "norm" of Bricken et al.'s sparsity tables)."""
    if feature_acts.ndim < 1 or feature_acts.numel() == 0:
        raise ValueError(f"l0 needs feature activations [... d_sae], got shape {tuple(feature_acts.shape)}")
    _finite("feature_acts", feature_acts)
    return float((feature_acts != 0).sum(-1).double().mean())


def fvu(x: Float[Tensor, "... d"], x_hat: Float[Tensor, "... d"]) -> float:
    """Fraction of variance unexplained  Σ‖x − x̂‖² / Σ‖x − mean(x)‖²  over all tokens, with mean(x) the mean
    activation vector. 0 for a perfect reconstruction, 1 for predicting the mean. (Bricken et al. report the MSE
    normalised this way; this is the pooled ratio, not a mean of per-token ratios.)"""
    if x.shape != x_hat.shape:
        raise ValueError(f"fvu: x {tuple(x.shape)} and x_hat {tuple(x_hat.shape)} differ in shape")
    if x.ndim < 1 or x.numel() == 0:
        raise ValueError(f"fvu needs activations [... d], got shape {tuple(x.shape)}")
    _finite("x", x)
    _finite("x_hat", x_hat)
    x2 = x.reshape(-1, x.shape[-1]).double()  # [token d]
    xh2 = x_hat.reshape(-1, x.shape[-1]).double()
    total = ((x2 - x2.mean(0)) ** 2).sum()
    if total == 0:
        raise ValueError("fvu: x has zero variance (a single token, or all tokens equal), so FVU is undefined")
    return float(((x2 - xh2) ** 2).sum() / total)


def ce_loss_recovered(clean_loss: float | Tensor, sae_loss: float | Tensor, zero_ablation_loss: float | Tensor) -> float:
    """Fraction of the cross-entropy loss recovered: (L_zero − L_sae) / (L_zero − L_clean).

    L_clean: the model as is; L_sae: the MLP output replaced by the SAE's reconstruction; L_zero: the MLP output
    zero-ablated (Bricken et al.'s "loss recovered" baseline, as in Neel Nanda's replication). 1 = the SAE loses
    nothing, 0 = no better than deleting the MLP; it can leave [0, 1] when the SAE is worse than ablation.
    """
    vals = {"clean_loss": clean_loss, "sae_loss": sae_loss, "zero_ablation_loss": zero_ablation_loss}
    vals = {k: float(v) for k, v in vals.items()}
    bad = [k for k, v in vals.items() if not math.isfinite(v)]
    if bad:
        raise ValueError(f"ce_loss_recovered: {', '.join(bad)} is NaN or inf ({vals})")
    denom = vals["zero_ablation_loss"] - vals["clean_loss"]
    if denom == 0:
        raise ValueError(f"ce_loss_recovered: zero-ablation loss equals the clean loss ({vals['clean_loss']}), so "
                         "ablating the MLP changes nothing and the fraction recovered is undefined")
    return (vals["zero_ablation_loss"] - vals["sae_loss"]) / denom


# -- feature density -----------------------------------------------------------------------------------------------

def firing_frequency(feature_acts: Float[Tensor, "... d_sae"]) -> Float[Tensor, " d_sae"]:
    """Fraction of tokens on which each feature is non-zero (Bricken et al.'s "feature density").
    Same "fires" test as :func:`l0`, so ``firing_frequency(f).sum() == l0(f)``."""
    if feature_acts.ndim < 1 or feature_acts.numel() == 0:
        raise ValueError(f"firing_frequency needs activations [... d_sae], got {tuple(feature_acts.shape)}")
    _finite("feature_acts", feature_acts)
    return (feature_acts.reshape(-1, feature_acts.shape[-1]) != 0).double().mean(0)  # [d_sae]


def _check_freq(freq: Tensor) -> None:
    if freq.ndim != 1 or freq.numel() == 0:
        raise ValueError(f"firing frequencies must be a non-empty vector [d_sae], got shape {tuple(freq.shape)}")
    _finite("freq", freq)
    if (freq < 0).any() or (freq > 1).any():
        raise ValueError("firing frequencies must lie in [0, 1]")


def dead_fraction(freq: Float[Tensor, " d_sae"]) -> float:
    """Fraction of features that never fire in the evaluation sample (Bricken et al.'s dead neurons). "Dead" is
    relative to the sample: a feature with density below ~1/n_tokens looks dead."""
    _check_freq(freq)
    return float((freq == 0).double().mean())


def dense_fraction(freq: Float[Tensor, " d_sae"], threshold: float = DENSE_THRESHOLD) -> float:
    """Fraction of features firing on more than ``threshold`` of tokens (default 10%, see DENSE_THRESHOLD)."""
    _check_freq(freq)
    if not 0 < threshold < 1:
        raise ValueError(f"dense threshold must lie in (0, 1), got {threshold}")
    return float((freq > threshold).double().mean())


@dataclass(frozen=True)
class DensityHistogram:
    counts: Tensor  # [bin] number of live features per log10-frequency bin
    edges: Tensor  # [bin + 1] bin edges in log10(firing frequency)
    n_dead: int  # features that never fired: log10(0) has no bin, so they are counted here
    n_features: int


def log_density_histogram(freq: Float[Tensor, " d_sae"], bins: int | Sequence[float] | Tensor = 40) -> DensityHistogram:
    """Histogram of log10 firing frequency of the live features (Bricken et al.'s feature-density plots), dead
    features counted separately. ``bins``: a number of equal bins from the rarest live feature's decade up to 0
    (= fires on every token), or explicit edges (use the same edges to compare dictionaries; a live feature outside
    them is an error rather than silently dropped)."""
    _check_freq(freq)
    live = freq[freq > 0].double()
    logf = torch.log10(live)  # [live]
    if isinstance(bins, int):
        if bins < 1:
            raise ValueError(f"need at least one bin, got {bins}")
        lo = math.floor(float(logf.min())) if len(logf) else -1.0
        edges = torch.linspace(min(lo, -1.0), 0.0, bins + 1, dtype=torch.float64)
    else:
        edges = torch.as_tensor(bins, dtype=torch.float64)
        if edges.ndim != 1 or len(edges) < 2 or not (edges[1:] > edges[:-1]).all():
            raise ValueError("histogram edges must be an increasing vector of at least two values")
        if len(logf) and (logf.min() < edges[0] or logf.max() > edges[-1]):
            raise ValueError(f"log10 firing frequencies span [{float(logf.min()):.2f}, {float(logf.max()):.2f}], "
                             f"outside the edges [{float(edges[0])}, {float(edges[-1])}]")
    counts = torch.histogram(logf, bins=edges).hist.round().long() if len(logf) else torch.zeros(len(edges) - 1).long()
    return DensityHistogram(counts, edges, int((freq == 0).sum()), len(freq))


# -- ground-truth monosemanticity: AUROC ---------------------------------------------------------------------------

def _labels(labels: Tensor, n: int) -> Bool[Tensor, " token"]:
    if labels.ndim != 1 or len(labels) != n:
        raise ValueError(f"labels must be a vector [token] of length {n}, got shape {tuple(labels.shape)}")
    if labels.dtype != torch.bool:
        if not ((labels == 0) | (labels == 1)).all():
            raise ValueError("labels must be boolean or 0/1")
        labels = labels == 1
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == n:
        raise ValueError(f"AUROC needs both classes, but all {n} labels are {bool(n_pos)}")
    return labels


def _sorted_ranks(s: Float[Tensor, "token unit"]) -> tuple[Tensor, Tensor]:
    """(1-based average ranks in sorted order, the sort order) per column: ties share the mean of their ranks."""
    n = s.shape[0]
    sorted_s, order = torch.sort(s, dim=0, stable=True)  # [token unit]
    idx = torch.arange(n)[:, None].expand_as(sorted_s)
    new = torch.ones_like(sorted_s, dtype=torch.bool)
    new[1:] = sorted_s[1:] != sorted_s[:-1]  # first element of a tie group
    last = torch.ones_like(new)
    last[:-1] = new[1:]  # last element of a tie group
    first_i = torch.where(new, idx, 0).cummax(0).values
    last_i = torch.where(last, idx, n - 1).flip(0).cummin(0).values.flip(0)
    return (first_i + last_i).double() / 2 + 1, order  # [token unit] each


def _auroc_block(s: Float[Tensor, "token unit"], y: Bool[Tensor, " token"]) -> Float[Tensor, " unit"]:
    """Mann–Whitney U from average ranks."""
    return _u_from_ranks(*_sorted_ranks(s), y[:, None])[:, 0]


def _u_from_ranks(ranks: Tensor, order: Tensor, y: Bool[Tensor, "token label"]) -> Float[Tensor, "unit label"]:
    n, n_pos = ranks.shape[0], y.double().sum(0)  # [label]
    # the rank sum of each label's positives, per unit: gather the labels in each unit's sort order
    u = torch.stack([(ranks * y[:, j][order]).sum(0) for j in range(y.shape[1])], dim=1) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * (n - n_pos))


def auroc_many(scores: Float[Tensor, "token unit"], labels: Bool[Tensor, "token label"],
               max_elements: int = 2**24) -> Float[Tensor, "label unit"]:
    """:func:`auroc` of every unit against several label vectors at once: each column is sorted once, not once
    per label (the ground-truth comparison scores thousands of features against a dozen latents)."""
    if scores.ndim != 2 or labels.ndim != 2 or labels.shape[0] != scores.shape[0]:
        raise ValueError(f"need scores [token unit] and labels [token label] with the same tokens, got "
                         f"{tuple(scores.shape)} and {tuple(labels.shape)}")
    _finite("scores", scores)
    y = torch.stack([_labels(labels[:, j], scores.shape[0]) for j in range(labels.shape[1])], dim=1)
    step = max(1, max_elements // scores.shape[0])
    return torch.cat([_u_from_ranks(*_sorted_ranks(scores[:, j:j + step].double()), y)
                      for j in range(0, scores.shape[1], step)]).T  # [label unit]


def auroc(scores: Float[Tensor, " token *unit"], labels: Bool[Tensor, " token"],
          max_elements: int = 2**24) -> Float[Tensor, " *unit"]:
    """Exact ROC AUC of each score column as a detector of ``labels``: P(s⁺ > s⁻) + ½ P(s⁺ = s⁻) over
    positive/negative token pairs (Mann–Whitney U with average ranks for ties). ``scores`` [token] or
    [token unit]; the units are processed ``max_elements`` scores at a time to bound memory."""
    if scores.ndim not in (1, 2):
        raise ValueError(f"scores must be [token] or [token unit], got shape {tuple(scores.shape)}")
    s = scores[:, None] if scores.ndim == 1 else scores  # [token unit]
    if s.shape[0] < 2 or s.shape[1] == 0:
        raise ValueError(f"auroc needs at least two tokens and one unit, got shape {tuple(scores.shape)}")
    _finite("scores", s)
    y = _labels(labels, s.shape[0])
    step = max(1, max_elements // s.shape[0])
    out = torch.cat([_auroc_block(s[:, j:j + step].double(), y) for j in range(0, s.shape[1], step)])  # [unit]
    return out[0] if scores.ndim == 1 else out


def best_unit_auroc(acts: Float[Tensor, "token unit"], labels: Bool[Tensor, " token"],
                    two_sided: bool = False) -> tuple[float, int]:
    """(best AUROC, index of that unit) among the units (SAE features or MLP neurons) as detectors of a latent
    property of the corpus (a boolean per token): Bricken et al.'s question of whether a single feature, or a single
    neuron, picks out the property.

    One-sided by default: a unit counts only by *firing more* on the latent (AUROC > 0.5). A unit that is lower on
    the latent (1 − AUROC) detects the complement ("not a name"), a dense property the paper does not call a feature;
    and counting it would favour the neurons (GELU outputs vary in both directions) over the SAE features (ReLU, zero
    on most tokens, so their 1 − AUROC stays near 0.5). ``two_sided=True`` takes max(AUROC, 1 − AUROC) as a
    robustness check; call :func:`auroc` on the returned unit to see its direction.
    """
    if acts.ndim != 2:
        raise ValueError(f"acts must be [token unit], got shape {tuple(acts.shape)}")
    a = auroc(acts, labels)  # [unit]
    if two_sided:
        a = torch.maximum(a, 1 - a)
    i = int(a.argmax())
    return float(a[i]), i


def firing_precision_recall(acts: Float[Tensor, " token"], labels: Bool[Tensor, " token"]) -> tuple[float, float]:
    """(precision, recall) of one unit read as a detector that *fires* when its activation is above zero: the
    fraction of its firing tokens that carry the latent (Bricken et al.'s "specificity": when the feature is on, is
    it the concept?) and the fraction of the latent's tokens it fires on (coverage, which AUROC rewards). A diagnostic
    of *why* one unit's AUROC is higher than another's, not a claim; precision is NaN for a unit that never fires.
    For GELU neurons "above zero" is the positive branch, for ReLU SAE features it is "active"."""
    if acts.ndim != 1:
        raise ValueError(f"acts must be one unit's activations [token], got shape {tuple(acts.shape)}")
    _finite("acts", acts)
    y = _labels(labels, len(acts))
    fires = acts > 0
    n_fire, hits = int(fires.sum()), int((fires & y).sum())
    return (hits / n_fire if n_fire else math.nan), hits / int(y.sum())


# -- feature splitting and MMCS ------------------------------------------------------------------------------------

def _unit_rows(name: str, m: Tensor) -> Tensor:
    if m.ndim != 2 or m.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty matrix [n d], got shape {tuple(m.shape)}")
    _finite(name, m)
    norms = m.double().norm(dim=1, keepdim=True)  # [n 1]
    if (norms == 0).any():
        raise ValueError(f"{name} has zero rows (no direction): {torch.nonzero(norms[:, 0] == 0)[:, 0].tolist()[:10]}")
    return m.double() / norms


def cosine_matrix(a: Float[Tensor, "n_a d"], b: Float[Tensor, "n_b d"]) -> Float[Tensor, "n_a n_b"]:
    """Cosine similarity between every row of ``a`` and every row of ``b``."""
    ua, ub = _unit_rows("a", a), _unit_rows("b", b)
    if ua.shape[1] != ub.shape[1]:
        raise ValueError(f"directions differ in dimension: {ua.shape[1]} vs {ub.shape[1]}")
    return ua @ ub.T


@dataclass(frozen=True)
class FeatureMatches:
    cos: Tensor  # [n_small n_large] decoder cosine similarities
    best: Tensor  # [n_small] index of the closest large-dictionary feature
    best_cos: Tensor  # [n_small]
    matches: list[list[int]]  # per small feature: large features with cos >= threshold, by decreasing cosine
    threshold: float


def match_features(dec_small: Float[Tensor, "n_small d"], dec_large: Float[Tensor, "n_large d"],
                   threshold: float = MATCH_THRESHOLD) -> FeatureMatches:
    """Feature splitting (Bricken et al., "Feature Splitting"): for each feature of the small dictionary, the
    large-dictionary features whose decoder directions are close to it (its "children" when it splits)."""
    if not -1 <= threshold <= 1:
        raise ValueError(f"cosine threshold must lie in [-1, 1], got {threshold}")
    if dec_small.ndim != 2 or dec_large.ndim != 2 or dec_small.shape[1] != dec_large.shape[1]:
        raise ValueError(f"decoders must be [n d] with the same d, got {tuple(dec_small.shape)} and "
                         f"{tuple(dec_large.shape)}")
    cos = cosine_matrix(dec_small, dec_large)  # [n_small n_large]
    best_cos, best = cos.max(1)
    order = cos.argsort(dim=1, descending=True, stable=True)
    matches = [[int(j) for j in order[i] if cos[i, j] >= threshold] for i in range(len(cos))]
    return FeatureMatches(cos, best, best_cos, matches, threshold)


def mean_max_cosine(decoder: Float[Tensor, "n_learned d"], truth: Float[Tensor, "n_true d"]) -> float:
    """MMCS (Sharkey et al. 2022): mean over the reference directions of the best cosine with any learned
    direction. Signed cosine: a decoder direction pointing the opposite way is not the feature (SAE activations
    are non-negative). 1 iff every reference direction is learned."""
    return float(cosine_matrix(truth, decoder).max(1).values.mean())


# -- top-activating contexts ---------------------------------------------------------------------------------------

class Context(TypedDict):
    doc: int
    pos: int  # position of the firing token in its document
    act: float
    token_ids: list[int]  # the window, firing token included
    acts: list[float]  # the feature's activation at each token of the window
    target: int  # index of the firing token in token_ids


def top_activating_contexts(feature_acts: Float[Tensor, "..."], token_ids: Int[Tensor, "..."], k: int = 10,
                            window: int = 8, doc_index: Int[Tensor, " token"] | None = None,
                            after: int = 0) -> list[Context]:
    """The ``k`` highest-activating tokens of one feature with ``window`` tokens of context before (and ``after``
    tokens after) each, never crossing a document boundary (Bricken et al.'s feature visualisations).

    ``token_ids`` [docs pos] with ``feature_acts`` [docs pos] or flat [docs*pos]; or flat token_ids [token] with
    ``doc_index`` [token] (each document's tokens contiguous; None = one document). Only tokens where the feature
    fires (activation > 0) are returned, so a rarely firing feature gives fewer than k; ties keep corpus order.
    """
    if k < 1 or window < 0 or after < 0:
        raise ValueError(f"need k >= 1, window >= 0, after >= 0; got k={k}, window={window}, after={after}")
    if token_ids.ndim == 2:
        if doc_index is not None:
            raise ValueError("doc_index is only for flat token_ids; rows of [docs pos] token_ids are the documents")
        doc = torch.arange(token_ids.shape[0]).repeat_interleave(token_ids.shape[1])  # [token]
    elif token_ids.ndim == 1:
        doc = torch.zeros(len(token_ids), dtype=torch.long) if doc_index is None else doc_index.long()
        if doc.shape != token_ids.shape:
            raise ValueError(f"doc_index {tuple(doc.shape)} and token_ids {tuple(token_ids.shape)} differ in shape")
    else:
        raise ValueError(f"token_ids must be [docs pos] or [token], got shape {tuple(token_ids.shape)}")
    if feature_acts.numel() != token_ids.numel() or (feature_acts.ndim > 1 and feature_acts.shape != token_ids.shape):
        raise ValueError(f"feature_acts {tuple(feature_acts.shape)} does not match token_ids {tuple(token_ids.shape)}")
    acts = feature_acts.reshape(-1).double()  # [token]
    _finite("feature_acts", acts)
    ids = token_ids.reshape(-1)
    n = len(ids)
    idx = torch.arange(n)
    new = torch.ones(n, dtype=torch.bool)
    new[1:] = doc[1:] != doc[:-1]
    if int(new.sum()) != len(doc.unique()):
        raise ValueError("doc_index must list each document's tokens contiguously")
    last = torch.ones(n, dtype=torch.bool)
    last[:-1] = new[1:]
    start = torch.where(new, idx, 0).cummax(0).values  # [token] first token of the token's document
    end = torch.where(last, idx, n - 1).flip(0).cummin(0).values.flip(0)  # [token] its last token
    firing = torch.nonzero(acts > 0)[:, 0]
    top = firing[torch.argsort(-acts[firing], stable=True)[:k]]
    out: list[Context] = []
    for i in top.tolist():
        lo, hi = max(i - window, int(start[i])), min(i + after, int(end[i]))
        out.append(Context(doc=int(doc[i]), pos=i - int(start[i]), act=float(acts[i]),
                           token_ids=ids[lo:hi + 1].tolist(), acts=acts[lo:hi + 1].tolist(), target=i - lo))
    return out


def render_context_html(tokens: list[str], acts: list[float], target: int | None = None,
                        max_act: float | None = None) -> str:
    """An HTML snippet: one span per token, background opacity = activation / ``max_act`` (default: the largest
    activation in the window), the firing token ``target`` (default: the most active one) outlined. Every token
    string is ``html.escape``d; nothing else from the input reaches the HTML except formatted numbers."""
    if len(tokens) != len(acts):
        raise ValueError(f"{len(tokens)} tokens but {len(acts)} activations")
    if not all(isinstance(t, str) for t in tokens):
        raise TypeError("tokens must be strings (decode token ids first)")
    a = [float(x) for x in acts]
    if not all(math.isfinite(x) for x in a):
        raise ValueError("activations contain NaN or inf")
    top = max(a, default=0.0)
    scale = top if max_act is None else float(max_act)
    if target is None and top > 0:
        target = a.index(top)
    if target is not None and not 0 <= target < len(tokens):
        raise ValueError(f"target {target} is outside the {len(tokens)} tokens")
    spans = []
    for i, (tok, x) in enumerate(zip(tokens, a, strict=True)):
        alpha = min(max(x / scale, 0.0), 1.0) if scale > 0 else 0.0
        style = f"background-color: rgba(255, 120, 0, {alpha:.3f});"
        if i == target:
            style += " outline: 1px solid #000; font-weight: bold;"
        text = html.escape(visible(tok.replace("\n", "\u21b5")), quote=True)
        spans.append(f'<span style="{style}" title="{x:.4g}">{text}</span>')
    return '<div class="sae-context" style="font-family: monospace; white-space: pre-wrap;">' + "".join(spans) + "</div>"
