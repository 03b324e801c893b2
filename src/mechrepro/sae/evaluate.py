"""Evaluating SAEs on a one-layer model's MLP neurons, as Bricken et al. 2023 (*Towards Monosemanticity*) do, and
against the ground truth our corpus records (beyond the paper).

For each dictionary size: L0, the fraction of variance unexplained, the cross-entropy loss recovered when the
SAE's reconstruction replaces the MLP's neurons (zero ablation = 0%, the clean model = 100%, as in Nanda's open
replication), dead and dense features and the feature-density histogram. Then:

* **the paper's measures of "more interpretable"** against the ground truth the synthetic corpus records for every
  token (latent variables: "this token is a name", "a year's two digits", "inside an IOI narrative", ...):
  specificity and automated interpretability with the latents as explanations (:mod:`.interpretability`); the
  AUROC of the best feature and the best neuron as detectors of each latent, kept as a diagnostic;
* **feature dashboards** for the largest dictionary (:mod:`.dashboard`);
* **feature splitting**: features of the smallest and the largest dictionary matched by decoder cosine;
* **top-activating contexts** of the best feature for each latent (token strings; the report escapes them);
* **steering**: one interpretable feature clamped high, and what happens to the next-token predictions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from mechrepro.data.corpus import FAMILIES, ROLES
from mechrepro.sae import dashboard as D
from mechrepro.sae import interpretability as I
from mechrepro.sae import metrics as M
from mechrepro.sae.train import MLP_HOOK

# Latent variables of the corpus (data/corpus.py) as boolean properties of a token: name -> (description, rule).
LATENTS = {
    "name": ("the token is a person's name", lambda lat: _role(lat, "io", "s1", "s2", "io2", "name")),
    "ioi_subject_repeat": ("the second mention of the IOI subject (S2)", lambda lat: _role(lat, "s2")),
    "place": ("the token is a place", lambda lat: _role(lat, "place")),
    "object": ("the token is an object", lambda lat: _role(lat, "object")),
    "year_century": ("the century half of a year (' 17' of 1732)", lambda lat: _role(lat, "x_century", "y_century")),
    "year_two_digits": ("the two-digit half of a year ('32' of 1732)", lambda lat: _role(lat, "x_yy", "y_yy")),
    "ioi_narrative": ("inside an IOI narrative", lambda lat: lat["family"] == FAMILIES.index("ioi")),
    "year_sentence": ("inside a sentence about years", lambda lat: lat["family"] == FAMILIES.index("years")),
    "code": ("inside code", lambda lat: lat["family"] == FAMILIES.index("code")),
    "dialogue": ("inside dialogue", lambda lat: lat["family"] == FAMILIES.index("dialogue")),
    "arithmetic": ("inside arithmetic", lambda lat: lat["family"] == FAMILIES.index("arithmetic")),
    "repeated_span": ("part of a span that recurs verbatim (its second occurrence)", lambda lat: lat["is_repeat"]),
}


def _role(lat: dict, *roles: str) -> Tensor:
    return torch.isin(lat["role"], torch.tensor([ROLES.index(r) for r in roles]))


@dataclass(frozen=True)
class EvalConfig:
    n_docs: int  # held-out documents evaluated (every position but BOS)
    n_contexts: int  # top-activating contexts shown per feature
    context_window: int
    steer_latent: str  # the latent whose best feature is clamped
    steer_scale: float  # the clamp, in multiples of the feature's largest activation on the held-out documents

    def __post_init__(self):
        if self.n_docs < 2 or self.n_contexts < 1 or self.context_window < 0:
            raise ValueError("monosemanticity.eval: need n_docs >= 2, n_contexts >= 1, context_window >= 0")
        if self.steer_latent not in LATENTS:
            raise ValueError(f"monosemanticity.eval.steer_latent must be one of {sorted(LATENTS)}, "
                             f"got {self.steer_latent!r}")
        if self.steer_scale <= 0:
            raise ValueError(f"monosemanticity.eval.steer_scale must be > 0, got {self.steer_scale}")


def latent_labels(latents: dict[str, Tensor]) -> dict[str, Bool[Tensor, " token"]]:
    """Each latent's boolean label per token, positions after BOS, documents in order (as ``mlp_activations``)."""
    out = {}
    for name, (_, rule) in LATENTS.items():
        label = rule(latents)[:, 1:].flatten()
        if 0 < int(label.sum()) < len(label):  # a latent absent from (or everywhere in) the sample has no AUROC
            out[name] = label
    return out


@torch.inference_mode()
def loss_with(model: HookedTransformer, tokens: Int[Tensor, "doc pos"], replace=None, hook: str = MLP_HOOK,
              batch_size: int = 64) -> float:
    """Mean next-token loss with the neurons at ``hook`` replaced by ``replace(neurons)`` (None: the clean model)."""
    total = 0.0
    for i in range(0, len(tokens), batch_size):
        t = tokens[i:i + batch_size].to(model.cfg.device)
        hooks = [] if replace is None else [(hook, lambda a, hook: replace(a))]
        total += float(model.run_with_hooks(t, return_type="loss", fwd_hooks=hooks)) * len(t)
    return total / len(tokens)


def baseline_losses(model: HookedTransformer, tokens: Int[Tensor, "doc pos"], hook: str = MLP_HOOK) -> dict:
    """The clean model's loss and the loss with the neurons zero-ablated: the 100% and 0% of loss recovered."""
    return {"clean": loss_with(model, tokens, None, hook), "zero": loss_with(model, tokens, torch.zeros_like, hook)}


@torch.inference_mode()
def evaluate_dictionary(model: HookedTransformer, sae, tokens: Int[Tensor, "doc pos"],
                        acts: Float[Tensor, "token d_mlp"], baseline: dict | None = None,
                        hook: str = MLP_HOOK) -> tuple[dict, Tensor]:
    """The paper's numbers for one SAE, and its feature activations [token d_sae]. ``baseline``: the clean and
    zero-ablation losses (:func:`baseline_losses`), shared by every dictionary evaluated on these tokens."""
    feats = sae.encode(acts)  # [token d_sae]
    freq = M.firing_frequency(feats)
    ce = {**(baseline or baseline_losses(model, tokens, hook)),
          "sae": loss_with(model, tokens, lambda a: sae.decode(sae.encode(a)), hook)}
    row = {"d_sae": int(feats.shape[1]), "expansion": feats.shape[1] / acts.shape[1], "l0": M.l0(feats),
           "fvu": M.fvu(acts, sae.decode(feats)), "loss_clean": ce["clean"], "loss_sae": ce["sae"],
           "loss_zero_ablation": ce["zero"], "ce_recovered": M.ce_loss_recovered(ce["clean"], ce["sae"], ce["zero"]),
           "dead_fraction": M.dead_fraction(freq), "dense_fraction": M.dense_fraction(freq)}
    return row, feats


def ground_truth(units: dict[str, Float[Tensor, "token unit"]], labels: dict[str, Tensor]) -> list[dict]:
    """Per latent and unit family ("neurons", "x16", ...): the best unit's AUROC (one-sided, as
    ``metrics.best_unit_auroc``), its index, and that unit's firing precision and recall
    (``metrics.firing_precision_recall``: does it fire only on the latent, and on how much of it)."""
    names = list(labels)
    y = torch.stack([labels[n] for n in names], dim=1)  # [token latent]
    rows = [{"latent": n, "description": LATENTS[n][0], "frequency": float(labels[n].float().mean())} for n in names]
    for family, a in units.items():
        best = M.auroc_many(a, y).max(dim=1)  # [latent]
        for row, v, i in zip(rows, best.values.tolist(), best.indices.tolist(), strict=True):
            row[f"auroc_{family}"], row[f"unit_{family}"] = v, i
            row[f"precision_{family}"], row[f"recall_{family}"] = M.firing_precision_recall(a[:, i],
                                                                                         labels[row["latent"]])
    return rows


def _median_defined(values: list[float]) -> float | None:
    """Median of the defined values (precision is NaN for a unit that never fires); None if there are none, e.g.
    a dictionary whose features are all dead."""
    v = [x for x in values if not math.isnan(x)]
    return float(np.median(v)) if v else None


@torch.inference_mode()
def steer(model: HookedTransformer, sae, feature: int, value: float, tokens: Int[Tensor, "doc pos"],
          target_ids: Tensor, hook: str = MLP_HOOK) -> dict:
    """Clamp ``feature`` to ``value`` at every position (the neurons get the SAE's error term plus the
    reconstruction with the clamped feature, as Bricken et al. clamp features) and compare next-token
    predictions: the probability mass on ``target_ids`` (the tokens that follow the latent) and the top tokens
    at the last position, before and after."""
    w = sae.W_dec[feature]  # [d_mlp]

    def clamp(a, hook):
        f = sae.encode(a)[..., feature]  # [batch pos]
        return a + (value - f)[..., None] * w

    clean = model(tokens.to(model.cfg.device)).softmax(-1)  # [doc pos vocab]
    steered = model.run_with_hooks(tokens.to(model.cfg.device), fwd_hooks=[(hook, clamp)]).softmax(-1)
    def mass(p: Tensor) -> float:
        return float(p[..., target_ids].sum(-1).mean())
    last = {k: p[:, -1].mean(0) for k, p in (("before", clean), ("after", steered))}
    return {"mass_before": mass(clean), "mass_after": mass(steered),
            "top_before": last["before"].topk(8).indices.tolist(), "top_after": last["after"].topk(8).indices.tolist(),
            "p_top_before": last["before"].topk(8).values.tolist(), "p_top_after": last["after"].topk(8).values.tolist()}


def following_token_ids(labels: Tensor, tokens: Int[Tensor, "doc pos"]) -> Tensor:
    """The vocabulary ids that follow a token carrying the latent somewhere in the sample (after a century token:
    the two-digit tokens). A feature that means the latent should, clamped on, make these more likely."""
    at = labels.view(tokens.shape[0], tokens.shape[1] - 1)[:, :-1]  # [doc pos-2]: latent at positions 1..n-2
    return tokens[:, 2:][at].unique()


def feature_splitting(dec_small: Tensor, dec_large: Tensor, feats_large: Tensor, small_ids: list[int] | None = None,
                      n_show: int = 6) -> list[dict]:
    """Bricken et al.'s feature splitting: small-dictionary features (``small_ids``, default: those with the most
    children) whose direction reappears as one or several large-dictionary features (cosine >= the match
    threshold)."""
    m = M.match_features(dec_small, dec_large)
    alive = M.firing_frequency(feats_large) > 0
    order = small_ids if small_ids is not None else np.argsort([-len(c) for c in m.matches], kind="stable")
    out = []
    for i in list(order)[:n_show]:
        children = [j for j in m.matches[i] if alive[j]][:6]
        out.append({"small": int(i), "children": children, "cosines": [float(m.cos[i, j]) for j in children]})
    return out


def evaluate_all(model: HookedTransformer, saes: dict[int, object], tokens: Int[Tensor, "doc pos"],
                 latents: dict[str, Tensor] | None, cfg: EvalConfig, hook: str = MLP_HOOK,
                 probe_models: dict[str, HookedTransformer] | None = None) -> dict:
    """Everything the report shows about the SAEs (``saes``: expansion -> SAE). ``latents`` None (a dataset
    without ground truth, e.g. the paper scale's): no AUROC, contexts of the most frequent features instead.
    ``probe_models``: name -> model whose residual stream is probed for the latents (the SAEs' model also at its
    neurons), beside the best SAE feature (:mod:`.probes`)."""
    from mechrepro.sae.train import mlp_activations

    acts = mlp_activations(model, tokens, hook)  # [token d_mlp]
    rows, feats, freqs = [], {}, {}
    baseline = baseline_losses(model, tokens, hook)
    for e in sorted(saes):
        row, feats[e] = evaluate_dictionary(model, saes[e], tokens, acts, baseline, hook)
        rows.append(row)
        freqs[e] = M.firing_frequency(feats[e])
        print(f"[monosemanticity] x{e}: {row}", flush=True)
    small, large = min(saes), max(saes)
    summary = {f"sae.x{r_['expansion']:g}.{k}": v for r_ in rows for k, v in r_.items() if k != "expansion"}
    summary |= {f"sae.largest.{k}": v for k, v in rows[-1].items()} | {"sae.n_dictionaries": len(rows)}
    labels = latent_labels(latents) if latents is not None else {}
    truth = ground_truth({"neurons": acts, **{f"x{e}": feats[e] for e in sorted(saes)}}, labels) if labels else []
    if truth:
        gap = [t[f"auroc_x{large}"] - t["auroc_neurons"] for t in truth]
        summary |= {"auroc.median_gap": float(np.median(gap)), "auroc.n_latents": len(truth),
                    "auroc.median_sae": float(np.median([t[f"auroc_x{large}"] for t in truth])),
                    "auroc.median_neuron": float(np.median([t["auroc_neurons"] for t in truth])),
                    "auroc.n_sae_better": int(sum(g > 0 for g in gap))}
        # why the AUROCs differ (a diagnostic, no claim): the best units' firing precision and recall, medians
        for k in ("precision", "recall"):
            summary |= {f"auroc.median_{k}_sae": _median_defined([t[f"{k}_x{large}"] for t in truth]),
                        f"auroc.median_{k}_neuron": _median_defined([t[f"{k}_neurons"] for t in truth])}
    # top-activating contexts: the best feature of the largest dictionary for each latent (or the most frequent)
    shown = [(t["latent"], t[f"unit_x{large}"]) for t in truth] or [
        (f"frequent #{i}", int(j)) for i, j in enumerate(freqs[large].argsort(descending=True)[:6])]
    def vocab(ids: list[int]) -> list[str]:  # each token as text (" Mary", not the BPE form "ĠMary")
        return [model.tokenizer.decode([int(i)]) for i in ids]
    body = tokens[:, 1:]  # the activations skip BOS
    contexts = []
    for latent, f in shown:
        ctx = M.top_activating_contexts(feats[large][:, f], body, k=cfg.n_contexts, window=cfg.context_window)
        contexts.append({"latent": latent, "feature": int(f), "dictionary": f"x{large}",
                         "frequency": float(freqs[large][f]),
                         "contexts": [{**c, "tokens": vocab(c["token_ids"])} for c in ctx]})
    split_cos = None
    splitting = []
    if small != large:
        # the small dictionary's best detectors of the latents (those we can name), else the most-split features
        ids = list(dict.fromkeys(t[f"unit_x{small}"] for t in truth)) if truth else None
        splitting = feature_splitting(saes[small].W_dec.detach(), saes[large].W_dec.detach(), feats[large], ids)
        for sp in splitting:
            sp["latent"] = next((t["latent"] for t in truth if t[f"unit_x{small}"] == sp["small"]), "")
        for s in splitting:
            s["small_top_tokens"] = _top_tokens(feats[small][:, s["small"]], body, vocab)
            s["children_top_tokens"] = [_top_tokens(feats[large][:, c], body, vocab) for c in s["children"]]
        split_cos = M.cosine_matrix(saes[small].W_dec.detach(), saes[large].W_dec.detach()).float()
    steering = []  # one clamp per dictionary: its best feature for the steering latent
    if cfg.steer_latent in labels:
        targets = following_token_ids(labels[cfg.steer_latent], tokens)
        prompts = tokens[: min(32, len(tokens))]
        for e in sorted(saes):
            f = next(t for t in truth if t["latent"] == cfg.steer_latent)[f"unit_x{e}"]
            value = cfg.steer_scale * float(feats[e][:, f].max())
            st = {"dictionary": f"x{e}", "latent": cfg.steer_latent, "description": LATENTS[cfg.steer_latent][0],
                  "feature": int(f), "value": value, **steer(model, saes[e], f, value, prompts, targets, hook)}
            st["top_before"], st["top_after"] = vocab(st["top_before"]), vocab(st["top_after"])
            st["mass_ratio"] = st["mass_after"] / st["mass_before"]
            steering.append(st)
            summary[f"steering.x{e}.mass_ratio"] = st["mass_ratio"]
        summary |= {"steering.largest.mass_before": steering[-1]["mass_before"],
                    "steering.largest.mass_after": steering[-1]["mass_after"],
                    "steering.largest.mass_ratio": steering[-1]["mass_ratio"]}
    spec, auto = [], []  # the paper's measures, every family, on held-out halves of the documents
    if labels:
        halves = I.Halves.by_document(tokens.shape[0], tokens.shape[1] - 1, seed=0)
        for family, e, a in [("neurons", None, acts), *(("sae", e, feats[e]) for e in sorted(saes))]:
            spec += [{**r, "expansion": e} for r in I.specificity({family: a}, labels, halves)]
            auto += [{**r, "expansion": e} for r in I.automated_interpretability({family: a}, labels, halves)]
        pick = (None, large)
        summary |= I.summarize([r for r in spec if r["expansion"] in pick], [r for r in auto if r["expansion"] in pick],
                               "sae")
    split_latent = splitting_for_latent(saes, feats, labels, cfg.steer_latent) if labels and small != large else {}
    probes = []
    if labels and probe_models:
        from mechrepro.sae.probes import latent_probes

        probes = latent_probes({n: (m, hook if m is model else None) for n, m in probe_models.items()}, tokens, labels,
                               feats[large], f"x{large}")
    named = [st["feature"] for st in steering if st["dictionary"] == f"x{large}"]
    dashboards = _dashboards(model, saes[large], feats[large], body, labels, auto, large, named, vocab, cfg, hook)
    return {"summary": summary, "dictionaries": rows, "ground_truth": truth, "contexts": contexts,
            "splitting": splitting, "splitting_cos": split_cos, "steering": steering, "frequencies": freqs,
            "specificity": spec, "autointerp": auto, "dashboards": dashboards, "split_latent": split_latent,
            "probes": probes}


def splitting_for_latent(saes: dict[int, object], feats: dict[int, Tensor], labels: dict[str, Tensor], latent: str,
                         n: int = 3) -> dict:
    """Feature splitting made visible for one latent (Bricken et al., "Feature Splitting"): at each dictionary size,
    the ``n`` features most specific to it (activation-weighted precision on the held-out tokens, among features
    that fire on at least :data:`interpretability.MIN_RECALL` of its tokens), and the decoder cosine of every
    feature with every one of the next size's. Empty where the latent is absent from the sample."""
    if latent not in labels:
        return {}
    y = labels[latent][:, None]
    sizes = []
    for e in sorted(saes):
        prec, rec = (v[:, 0] for v in I.qualified_precision(feats[e], y))
        order = [int(i) for i in prec.argsort(descending=True)[:n] if prec[i] >= 0]
        sizes.append({"expansion": e, "features": order, "precision": [float(prec[i]) for i in order],
                      "recall": [float(rec[i]) for i in order]})
    links = []
    for a, b in zip(sizes, sizes[1:], strict=False):
        if a["features"] and b["features"]:
            cos = M.cosine_matrix(saes[a["expansion"]].W_dec.detach()[a["features"]],
                                  saes[b["expansion"]].W_dec.detach()[b["features"]])
            links.append({"from": a["expansion"], "to": b["expansion"], "cosine": cos.tolist()})
    return {"latent": latent, "description": LATENTS[latent][0], "sizes": sizes, "links": links}


def _dashboards(model: HookedTransformer, sae, feats: Tensor, body: Tensor, labels: dict, auto: list[dict],
                expansion: int, named: list[int], vocab, cfg: EvalConfig, hook: str) -> dict:
    """The largest dictionary's feature index (every live feature) and the dashboards of the 20 features most
    interpretable by the held-out automated-interpretability score (without latents: the most frequent), every
    feature a claim names and 5 drawn at random."""
    dictionary = f"x{expansion}"
    freq = M.firing_frequency(feats)
    live = (freq > 0).nonzero().flatten().tolist()
    scores = {r["unit"]: r for r in auto if r["expansion"] == expansion}
    specific: dict[int, tuple[str, float]] = {}
    if labels:
        names = list(labels)
        y = torch.stack([labels[n] for n in names], 1)
        best = I.qualified_precision(feats, y)[0].max(1)
        specific = {f: (names[j], p) for f, (p, j) in enumerate(zip(best.values.tolist(), best.indices.tolist(),
                                                                   strict=True)) if p >= 0}
    rows = [{"dictionary": dictionary, "feature": f, "density": float(freq[f]), "max_act": float(feats[:, f].max()),
             "latent": specific.get(f, (None, None))[0], "precision": specific.get(f, (None, None))[1],
             "explanation": scores[f]["explanation"] if f in scores else None,
             "score": scores[f]["score"] if f in scores else None} for f in live]
    rank = {f: scores[f]["score"] for f in live if f in scores} or {f: float(freq[f]) for f in live}
    D.check_ids(named, feats.shape[1], dictionary)
    chosen = D.choose(rank, [f for f in named if f in live], seed=0)
    layer = int(hook.split(".")[1])
    with torch.inference_mode():
        dirs = sae.W_dec[chosen].float() @ model.blocks[layer].mlp.W_out.float() @ model.W_U.float()  # [chosen vocab]
    cards = [D.feature_card(f, feats[:, f], sae.W_dec[f].detach(), dirs[i], body, vocab, dictionary,
                            k=cfg.n_contexts, window=cfg.context_window) for i, f in enumerate(chosen)]
    return {"dictionary": dictionary, "index": rows, "cards": cards}


def _top_tokens(feature_acts: Tensor, body: Tensor, vocab, k: int = 5) -> list[str]:
    """The tokens a feature fires on most (its top-k activations' tokens, repeats dropped)."""
    top = feature_acts.topk(min(k * 3, len(feature_acts)))
    seen: list[str] = []
    for v, i in zip(top.values.tolist(), top.indices.tolist(), strict=True):
        tok = vocab([int(body.flatten()[i])])[0]
        if v > 0 and tok not in seen:
            seen.append(tok)
    return seen[:k]
