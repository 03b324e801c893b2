"""Indirect-object identification: Wang et al. 2022, *Interpretability in the Wild*.

A prompt introduces two names and mentions one of them (the subject S) again; the model should
complete it with the other (the indirect object IO): "When Mary and John went to the store, John
gave a drink to" -> " Mary". The metric is the logit difference logit(IO) - logit(S) at the final
token (Wang et al. §2); accuracy is the fraction of prompts with logit(IO) > logit(S), and top-1 the
fraction whose single most likely next token is IO.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from transformer_lens import HookedTransformer

from mechrepro.data import templates as T
from mechrepro.data import vocab as V
from mechrepro.data.tokenizer import single_token_id
from mechrepro.tasks.prompts import encode_prompt, last_token_logits


@dataclass(frozen=True)
class IOIPrompts:
    texts: list[str]
    tokens: list[list[int]]
    io: torch.Tensor  # [prompt] token id of " IO"
    s: torch.Tensor  # [prompt] token id of " S"
    templates: list[str]
    orders: list[str]


def make_ioi_prompts(tokenizer, n: int, seed: int, heldout: bool = True,
                     names=V.NAMES, places=V.PLACES, objects=V.OBJECTS) -> IOIPrompts:
    """``n`` IOI prompts from the held-out (default) or training templates, ABBA and BABA alternating.

    Names, places and objects must each be one token with a leading space; a word that is not
    raises ValueError naming it.
    """
    if n < 1:
        raise ValueError(f"need at least one IOI prompt, got n={n}")
    for w in (*names, *places, *objects):
        single_token_id(tokenizer, " " + w)
    rng = np.random.default_rng(seed)
    tmpl = T.templates("ioi", heldout)
    texts, tokens, io_ids, s_ids, names_used, orders = [], [], [], [], [], []
    for i in range(n):
        t = tmpl[i % len(tmpl)]
        io, s = (str(x) for x in rng.choice(names, size=2, replace=False))
        order = ("ABBA", "BABA")[(i // len(tmpl)) % 2]
        fills, _ = T.ioi_fills(order, io, s, str(rng.choice(places)), str(rng.choice(objects)))
        prompt = t.text[: t.text.rindex(" {IO}")]
        text = "".join(p for p, _ in T.render(prompt, fills))
        texts.append(text)
        tokens.append(encode_prompt(tokenizer, text))
        io_ids.append(single_token_id(tokenizer, " " + io))
        s_ids.append(single_token_id(tokenizer, " " + s))
        names_used.append(t.name)
        orders.append(order)
    return IOIPrompts(texts, tokens, torch.tensor(io_ids), torch.tensor(s_ids), names_used, orders)


def ioi_metrics(logits: torch.Tensor, prompts: IOIPrompts) -> dict[str, float]:
    """Logit difference, accuracy (IO > S) and top-1 accuracy from final-position logits [prompt vocab]."""
    idx = torch.arange(len(logits))
    diff = logits[idx, prompts.io] - logits[idx, prompts.s]
    if not torch.isfinite(diff).all():
        raise ValueError("IOI logit difference is not finite (NaN or inf logits)")
    return {"ioi_logit_diff": float(diff.mean()), "ioi_accuracy": float((diff > 0).float().mean()),
            "ioi_top1": float((logits.argmax(-1) == prompts.io).float().mean()), "ioi_n_prompts": len(logits)}


def evaluate_ioi(model: HookedTransformer, prompts: IOIPrompts) -> dict[str, float]:
    return ioi_metrics(last_token_logits(model, prompts.tokens), prompts)
