"""Greater-Than: Hanna et al. 2023, *How does GPT-2 compute greater-than?*

"The war lasted from the year 1732 to the year 17" -> a two-digit year token YY; the model should
put its probability on years later than the start year's YY. The probability difference (Hanna et
al. §2.2) is  Σ_{y > YY} p(y) − Σ_{y ≤ YY} p(y)  over the two-digit tokens "00".."99", with p the
softmax over the whole vocabulary. Start years are 1102-1798 with YY in 02..98, as in the paper, and only
years the tokenizer splits as [century][YY].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from transformer_lens import HookedTransformer

from mechrepro.data import templates as T
from mechrepro.data import vocab as V
from mechrepro.data.tokenizer import single_token_id, year_token_ids
from mechrepro.tasks.prompts import encode_prompt, last_token_logits

CENTURIES = tuple(range(11, 18))  # Hanna et al.: 11xx-17xx
YY_RANGE = (2, 98)


@dataclass(frozen=True)
class YearPrompts:
    texts: list[str]
    tokens: list[list[int]]
    start_yy: torch.Tensor  # [prompt] the start year's two-digit value
    templates: list[str]


def two_digit_ids(tokenizer) -> torch.Tensor:
    """Ids of "00".."99" (no leading space: the second half of a GPT-2-split year)."""
    return torch.tensor([single_token_id(tokenizer, f"{y:02d}") for y in range(100)])


def make_year_prompts(tokenizer, n: int, seed: int, heldout: bool = True, events=V.EVENTS) -> YearPrompts:
    """``n`` prompts from the held-out (default) or training templates, cut after the end year's century."""
    if n < 1:
        raise ValueError(f"need at least one Greater-Than prompt, got n={n}")
    for e in events:
        single_token_id(tokenizer, " " + e)
    rng = np.random.default_rng(seed)
    tmpl = T.templates("years", heldout)
    texts, tokens, yys, names = [], [], [], []
    for i in range(n):
        t = tmpl[i % len(tmpl)]
        c, yy = _sample_year(tokenizer, rng)
        pieces = T.render(t.text, {"EVENT": str(rng.choice(events)), "X": c * 100 + yy, "Y": c * 100 + yy})
        text = "".join(p for p, _ in pieces[:-1])  # drop the end year's two-digit piece: the answer
        texts.append(text)
        tokens.append(encode_prompt(tokenizer, text))
        yys.append(yy)
        names.append(t.name)
    return YearPrompts(texts, tokens, torch.tensor(yys), names)


def _sample_year(tokenizer, rng: np.random.Generator, tries: int = 1000) -> tuple[int, int]:
    """(century, YY) of a start year that the tokenizer splits as [century][YY]. Hanna et al. keep only
    such years: GPT-2 splits some otherwise (" 1103" -> " 110", "3")."""
    for _ in range(tries):
        c, yy = int(rng.choice(CENTURIES)), int(rng.integers(YY_RANGE[0], YY_RANGE[1] + 1))
        try:
            year_token_ids(tokenizer, c * 100 + yy)
            return c, yy
        except ValueError:
            continue
    raise ValueError("no start year in 1102-1798 splits into a century and a two-digit token with this tokenizer")


def prob_diff(logits: torch.Tensor, start_yy: torch.Tensor, yy_ids: torch.Tensor) -> torch.Tensor:
    """Per-prompt probability difference from final-position logits [prompt vocab]."""
    return _prob_diff(torch.softmax(logits.float(), dim=-1)[:, yy_ids], start_yy)


def _prob_diff(p: torch.Tensor, start_yy: torch.Tensor) -> torch.Tensor:
    """From probabilities of "00".."99" [prompt 100]."""
    later = torch.arange(100)[None, :] > start_yy[:, None]
    out = (p * later).sum(-1) - (p * ~later).sum(-1)
    if not torch.isfinite(out).all():
        raise ValueError("Greater-Than probability difference is not finite (NaN logits)")
    return out


def evaluate_greater_than(model: HookedTransformer, prompts: YearPrompts, tokenizer) -> dict[str, float]:
    logits = last_token_logits(model, prompts.tokens)
    yy_ids = two_digit_ids(tokenizer)
    p = torch.softmax(logits.float(), dim=-1)[:, yy_ids]
    return {"gt_prob_diff": float(_prob_diff(p, prompts.start_yy).mean()), "gt_year_mass": float(p.sum(-1).mean()),
            "gt_n_prompts": len(logits)}
