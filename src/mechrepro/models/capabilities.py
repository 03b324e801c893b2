"""Capability checks of a model on held-out prompts: does it *perform* the tasks the replications study?

* IOI (Wang et al. 2022): logit difference, accuracy (logit IO > logit S) and top-1 accuracy on the
  held-out IOI templates, per template and per order (ABBA / BABA); also on the training templates,
  so the card shows the generalisation gap;
* Greater-Than (Hanna et al. 2023): the probability difference on Hanna et al.'s own template, held
  out of the corpus, and the probability mass on two-digit year tokens;
* next-token loss on the held-out documents of the model's corpus (toy models).

Words that are not one token of the model's tokenizer (some names in GPT-2) are dropped from the
prompt lists, and the card lists them.
"""

from __future__ import annotations

import math

import torch
from transformer_lens import HookedTransformer

from mechrepro.data import vocab as V
from mechrepro.data.tokenizer import single_token_id
from mechrepro.tasks.greater_than import evaluate_greater_than, make_year_prompts
from mechrepro.tasks.ioi import IOIPrompts, evaluate_ioi, ioi_metrics, make_ioi_prompts
from mechrepro.tasks.prompts import last_token_logits
from mechrepro.techniques.losses import per_token_loss


def single_token_words(tokenizer, words) -> tuple[list[str], list[str]]:
    """(kept, dropped): the words that are / are not one token with a leading space."""
    kept, dropped = [], []
    for w in words:
        try:
            single_token_id(tokenizer, " " + w)
            kept.append(w)
        except ValueError:
            dropped.append(w)
    return kept, dropped


def _subset(p: IOIPrompts, mask: list[bool]) -> IOIPrompts:
    idx = [i for i, m in enumerate(mask) if m]
    return IOIPrompts([p.texts[i] for i in idx], [p.tokens[i] for i in idx], p.io[idx], p.s[idx],
                      [p.templates[i] for i in idx], [p.orders[i] for i in idx])


def _ioi_breakdown(logits: torch.Tensor, prompts: IOIPrompts) -> list[dict]:
    rows = []
    for key, values in (("template", prompts.templates), ("order", prompts.orders)):
        for v in sorted(set(values)):
            mask = [x == v for x in values]
            sub = _subset(prompts, mask)
            rows.append({"by": key, "group": v, **ioi_metrics(logits[torch.tensor(mask)], sub)})
    return rows


def evaluate_capabilities(model: HookedTransformer, tokenizer, *, n_ioi: int, n_years: int, seed: int,
                          heldout_tokens: torch.Tensor | None = None, required: dict | None = None) -> dict:
    """Every capability number of ``model`` plus pass/fail ``checks`` against ``required`` ({metric: min})."""
    names, dropped_names = single_token_words(tokenizer, V.NAMES)
    places, dropped_places = single_token_words(tokenizer, V.PLACES)
    objects, dropped_objects = single_token_words(tokenizer, V.OBJECTS)
    events, dropped_events = single_token_words(tokenizer, V.EVENTS)
    ioi = make_ioi_prompts(tokenizer, n_ioi, seed, names=names, places=places, objects=objects)
    ioi_train = make_ioi_prompts(tokenizer, n_ioi, seed + 1, heldout=False, names=names, places=places,
                                 objects=objects)
    years = make_year_prompts(tokenizer, n_years, seed, events=events)
    ioi_logits = last_token_logits(model, ioi.tokens)
    metrics = {**ioi_metrics(ioi_logits, ioi), **evaluate_greater_than(model, years, tokenizer)}
    metrics["ioi_accuracy_train_templates"] = evaluate_ioi(model, ioi_train)["ioi_accuracy"]
    if heldout_tokens is not None:
        metrics["heldout_loss"] = float(per_token_loss(model, heldout_tokens[:, : model.cfg.n_ctx]).mean())
    checks = []
    for metric, bar in (required or {}).items():
        value = metrics[metric]
        ok = math.isfinite(value) and value >= bar
        checks.append({"metric": metric, "bar": f">= {bar:g}", "value": value, "status": "pass" if ok else "fail"})
    return {
        "metrics": metrics, "checks": checks, "ioi_breakdown": _ioi_breakdown(ioi_logits, ioi),
        "examples": {"ioi": ioi.texts[:3], "greater_than": years.texts[:3]},
        "dropped_words": {"names": dropped_names, "places": dropped_places, "objects": dropped_objects,
                          "events": dropped_events},
    }
