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
    positions: dict[str, torch.Tensor] | None = None  # "io", "s1", "s2", "end": [prompt] token index (BOS = 0)
    fills: list[dict] | None = None  # the template fills of each prompt (to build corrupted versions)


def _render_prompt(tokenizer, template_text: str, fills: dict, roles: dict) -> tuple[str, list[int], dict[str, int]]:
    """Text, tokens (BOS first) and the token index of each named role of one IOI prompt (cut before IO).
    Positions are found by tokenizing the text up to each role's word, so they are right for any tokenizer."""
    prompt = template_text[: template_text.rindex(" {IO}")]
    pieces = T.render(prompt, fills, roles)
    text = "".join(p for p, _ in pieces)
    tokens = encode_prompt(tokenizer, text)
    pos, prefix = {}, ""
    for piece, role in pieces:
        prefix += piece
        if role in ("io", "s1", "s2"):
            pos[role] = len(encode_prompt(tokenizer, prefix)) - 1
    pos["end"] = len(tokens) - 1
    return text, tokens, pos


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
    texts, tokens, io_ids, s_ids, names_used, orders, positions, all_fills = [], [], [], [], [], [], [], []
    for i in range(n):
        t = tmpl[i % len(tmpl)]
        io, s = (str(x) for x in rng.choice(names, size=2, replace=False))
        order = ("ABBA", "BABA")[(i // len(tmpl)) % 2]
        fills, roles = T.ioi_fills(order, io, s, str(rng.choice(places)), str(rng.choice(objects)))
        text, toks, pos = _render_prompt(tokenizer, t.text, fills, roles)
        texts.append(text)
        tokens.append(toks)
        positions.append(pos)
        all_fills.append({**fills, "order": order, "template": t.name})
        io_ids.append(single_token_id(tokenizer, " " + io))
        s_ids.append(single_token_id(tokenizer, " " + s))
        names_used.append(t.name)
        orders.append(order)
    pos_t = {k: torch.tensor([p[k] for p in positions]) for k in ("io", "s1", "s2", "end")}
    return IOIPrompts(texts, tokens, torch.tensor(io_ids), torch.tensor(s_ids), names_used, orders, pos_t, all_fills)


def abc_corruption(tokenizer, prompts: IOIPrompts, seed: int, names=V.NAMES) -> IOIPrompts:
    """Wang et al.'s ABC distribution: each prompt with IO, S1 and S2 replaced by three other names, all
    different from each other and from the prompt's own (same template, places and objects, so the
    same token positions). Its ``io`` / ``s`` ids stay the *clean* prompt's, for the clean metric."""
    if prompts.fills is None:
        raise ValueError("these prompts carry no template fills; make them with make_ioi_prompts")
    rng = np.random.default_rng(seed)
    by_name = {t.name: t for t in T.TEMPLATES}
    texts, tokens = [], []
    for f in prompts.fills:
        pool = [x for x in names if x not in (f["IO"], f["S"])]
        a, b, c = (str(x) for x in rng.choice(pool, size=3, replace=False))
        new = {**f, "N1": a, "N2": b, "S": c}
        text, toks, _ = _render_prompt(tokenizer, by_name[f["template"]].text, new, {})
        texts.append(text)
        tokens.append(toks)
    return IOIPrompts(texts, tokens, prompts.io, prompts.s, prompts.templates, prompts.orders, prompts.positions,
                      None)


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
