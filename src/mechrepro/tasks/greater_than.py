"""Greater-Than: Hanna et al. 2023, *How does GPT-2 compute greater-than?*

"The war lasted from the year 1732 to the year 17" -> a two-digit year token YY; the model should
put its probability on years later than the start year's YY. The probability difference (Hanna et
al. §2.2) is  Σ_{y > YY} p(y) − Σ_{y ≤ YY} p(y)  over the two-digit tokens "00".."99", with p the
softmax over the whole vocabulary. Start years are 1102-1798 with YY in 02..98, as in the paper, and only
years the tokenizer splits as [century][YY].

The replication's dataset (:func:`year_dataset`, Hanna et al. §2.1) uses the paper's one template "The {noun}
lasted from the year XXYY to the year XX", YY balanced over 02..98, and the "01" corrupted dataset (YY -> 01)
that path patching and circuit evaluation take their corrupted activations from. Cutoff sharpness (§2.2) is
p(YY+1) - p(YY-1): how sharply the probability rises right after the start year.
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
START_YYS = tuple(range(YY_RANGE[0], YY_RANGE[1] + 1))  # 97 start years, the heatmaps' rows

# Hanna et al.'s nouns (their cache/potential_nouns.txt, as reproduced in ACDC's acdc/greaterthan/utils.py).
PAPER_NOUNS = tuple("""
abduction accord affair agreement appraisal assaults assessment attack attempts campaign captivity case challenge
chaos clash collaboration coma competition confrontation consequence conspiracy construction consultation contact
contract convention cooperation custody deal decline decrease demonstrations development disagreement disorder
dispute domination dynasty effect effort employment endeavor engagement epidemic evaluation exchange existence
expansion expedition experiments fall fame flights friendship growth hardship hostility illness impact imprisonment
improvement incarceration increase insurgency invasion investigation journey kingdom marriage modernization
negotiation notoriety obstruction operation order outbreak outcome overhaul patrols pilgrimage plague plan practice
process program progress project pursuit quest raids reforms reign relationship retaliation riot rise rivalry romance
rule sanctions shift siege slump stature stint strikes study test testing tests therapy tour tradition treaty trial
trip unemployment voyage warfare work""".split())
# The toy tokenizer knows its own event nouns (data/vocab.py), not the paper's.
NOUNS = {"toy": tuple(V.EVENTS), "paper": PAPER_NOUNS}
PAPER_TEMPLATE = T.TEMPLATES[T.TEMPLATE_IDS["years-lasted"]]  # "The {EVENT} lasted from the year {X} to the year {Y}"
CORRUPT_YY = 1  # the "01" dataset


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


def year_probs(logits: torch.Tensor, yy_ids: torch.Tensor) -> torch.Tensor:
    """Probabilities [prompt 100] of "00".."99" from final-position logits [prompt vocab] (softmax over the
    whole vocabulary, as in the paper)."""
    return torch.softmax(logits.float(), dim=-1)[:, yy_ids.to(logits.device)]


def prob_diff(logits: torch.Tensor, start_yy: torch.Tensor, yy_ids: torch.Tensor) -> torch.Tensor:
    """Per-prompt probability difference from final-position logits [prompt vocab]."""
    return _prob_diff(year_probs(logits, yy_ids), start_yy)


def _prob_diff(p: torch.Tensor, start_yy: torch.Tensor) -> torch.Tensor:
    """From probabilities of "00".."99" [prompt 100]."""
    later = torch.arange(100)[None, :] > start_yy[:, None]
    out = (p * later).sum(-1) - (p * ~later).sum(-1)
    if not torch.isfinite(out).all():
        raise ValueError("Greater-Than probability difference is not finite (NaN logits)")
    return out


def evaluate_greater_than(model: HookedTransformer, prompts: YearPrompts, tokenizer) -> dict[str, float]:
    logits = last_token_logits(model, prompts.tokens)
    p = year_probs(logits, two_digit_ids(tokenizer))
    return {"gt_prob_diff": float(_prob_diff(p, prompts.start_yy).mean()), "gt_year_mass": float(p.sum(-1).mean()),
            "gt_n_prompts": len(logits)}


def cutoff_sharpness(p: torch.Tensor, start_yy: torch.Tensor) -> torch.Tensor:
    """Per-prompt p(YY+1) - p(YY-1) from probabilities of "00".."99" [prompt 100] (Hanna et al. §2.2)."""
    rows = torch.arange(len(p))
    return p[rows, start_yy + 1] - p[rows, start_yy - 1]


def heatmap(values: torch.Tensor, start_yy: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` [prompt 100] per start year: [97 start YY (02..98), 100 predicted year]; NaN rows
    for start years without prompts (the paper's Fig. 2 / Fig. 5 heatmaps)."""
    out = torch.full((len(START_YYS), values.shape[1]), float("nan"))
    for i, yy in enumerate(START_YYS):
        rows = start_yy == yy
        if rows.any():
            out[i] = values[rows].float().mean(0)
    return out


@dataclass(frozen=True)
class GreaterThanConfig:
    """The ``greater_than`` section of a scale config (see replications/greater_than/README.md)."""

    model: str
    n_prompts: int
    vocabulary: str  # "paper": Hanna et al.'s nouns; "toy": the toy tokenizer's event nouns
    direct_threshold: float  # |path-patching effect on the logits| / clean probability difference
    path_threshold: float  # |effect through the receivers (MLP inputs, heads' keys and values)|
    n_random_k: int  # completeness: random subsets K of the circuit (Wang et al. §4.2)
    greedy_k: int  # completeness: greedy K up to this size
    seed: int
    paper_circuit: bool = False  # also evaluate Hanna et al.'s GPT-2 small circuit (needs a 12 x 12 model)

    def __post_init__(self):
        if self.vocabulary not in NOUNS:
            raise ValueError(f"greater_than.vocabulary must be one of {sorted(NOUNS)}, got {self.vocabulary!r}")
        if self.n_prompts < 2:
            raise ValueError(f"greater_than.n_prompts must be >= 2, got {self.n_prompts}")
        for k in ("direct_threshold", "path_threshold"):
            if not 0 < getattr(self, k) < 1:
                raise ValueError(f"greater_than.{k} must be in (0, 1), got {getattr(self, k)}")
        for k in ("n_random_k", "greedy_k"):
            if getattr(self, k) < 1:
                raise ValueError(f"greater_than.{k} must be >= 1, got {getattr(self, k)}")

    @classmethod
    def from_config(cls, section: dict) -> GreaterThanConfig:
        return cls(**section)


@dataclass(frozen=True)
class YearDataset:
    """Clean prompts and their "01" corruptions, one length: BOS + "The {noun} lasted from the year XX YY to the
    year XX"; the answer is the end year's two-digit token."""

    texts: list[str]
    corrupted_texts: list[str]
    clean: torch.Tensor  # [n pos]
    corrupted: torch.Tensor  # [n pos]
    start_yy: torch.Tensor  # [n]
    nouns: list[str]
    positions: dict[str, int]  # noun, xx1 (start century), yy (start two digits), end (the end century: last)
    yy_ids: torch.Tensor  # [100] ids of "00".."99"

    def metric(self, logits: torch.Tensor) -> torch.Tensor:
        """Mean probability difference at the last position of logits [n pos vocab]."""
        return _prob_diff(year_probs(logits[:, -1], self.yy_ids), self.start_yy.to(logits.device)).mean()

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """[n 100] year probabilities at the last position of logits [n pos vocab]."""
        return year_probs(logits[:, -1], self.yy_ids)


def year_dataset(tokenizer, cfg: GreaterThanConfig) -> YearDataset:
    """``cfg.n_prompts`` prompts with start YY cycling through 02..98 (balanced, as Hanna et al.), a seeded
    century in 11..17 whose years XXYY and XX01 both split as [century][two digits], and a seeded noun.
    Every noun must be one token (an error names the first that is not)."""
    nouns = NOUNS[cfg.vocabulary]
    for n in nouns:
        try:
            single_token_id(tokenizer, " " + n)
        except ValueError:
            raise ValueError(f"Greater-Than noun {n!r} (vocabulary {cfg.vocabulary!r}) is not a single token of this "
                             f"tokenizer: the task needs one token per noun (use vocabulary 'toy' for the toy "
                             f"tokenizer, 'paper' for GPT-2's)") from None
    rng = np.random.default_rng(cfg.seed)
    yy_ids = two_digit_ids(tokenizer)
    texts, corrupted, clean_tok, corr_tok, yys, picked = [], [], [], [], [], []
    positions = None
    for i in range(cfg.n_prompts):
        yy = START_YYS[i % len(START_YYS)]
        centuries = [c for c in CENTURIES if _splits(tokenizer, c * 100 + yy) and _splits(tokenizer, c * 100 + CORRUPT_YY)]
        if not centuries:
            raise ValueError(f"no century in {CENTURIES[0]}..{CENTURIES[-1]} splits both {yy:02d} and 01 years "
                             f"into a century and a two-digit token with this tokenizer")
        c, noun = int(rng.choice(centuries)), str(rng.choice(nouns))
        pair = []
        for start in (c * 100 + yy, c * 100 + CORRUPT_YY):
            pieces = T.render(PAPER_TEMPLATE.text, {"EVENT": noun, "X": start, "Y": start},
                              {"EVENT": "noun", "X": "xx", "Y": "end"})[:-1]  # drop the answer
            text = "".join(piece for piece, _ in pieces)
            ids = encode_prompt(tokenizer, text)
            if len(ids) != len(pieces) + 1:
                raise ValueError(f"Greater-Than prompt {text!r} is {len(ids) - 1} tokens, not {len(pieces)}: "
                                 f"every word must be one token")
            pair.append((text, ids))
            pos = {"noun": 1 + [r for _, r in pieces].index("noun"), "xx1": 1 + [r for _, r in pieces].index("xx_century"),
                   "yy": 1 + [r for _, r in pieces].index("xx_yy"), "end": len(pieces)}
            if positions is not None and pos != positions:
                raise ValueError(f"Greater-Than prompt {text!r} has role positions {pos}, others {positions}")
            positions = pos
        (t, ids), (tc, idc) = pair
        texts.append(t)
        corrupted.append(tc)
        clean_tok.append(ids)
        corr_tok.append(idc)
        yys.append(yy)
        picked.append(noun)
    return YearDataset(texts, corrupted, torch.tensor(clean_tok), torch.tensor(corr_tok), torch.tensor(yys), picked,
                       positions, yy_ids)


def _splits(tokenizer, year: int) -> bool:
    try:
        year_token_ids(tokenizer, year)
        return True
    except ValueError:
        return False
