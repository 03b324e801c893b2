"""Indirect-object identification: Wang et al. 2022, *Interpretability in the Wild*.

A prompt introduces two names and mentions one of them (the subject S) again; the model should
complete it with the other (the indirect object IO): "When Mary and John went to the store, John
gave a drink to" -> " Mary". The metric is the logit difference logit(IO) - logit(S) at the final
token (Wang et al. §2); accuracy is the fraction of prompts with logit(IO) > logit(S), and top-1 the
fraction whose single most likely next token is IO.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformer_lens import HookedTransformer

from mechrepro.data import templates as T
from mechrepro.data import vocab as V
from mechrepro.data.tokenizer import single_token_id
from mechrepro.tasks.prompts import encode_prompt, last_token_logits
from mechrepro.techniques.circuits import Circuit

# ---------------------------------------------------------------------------------------------
# The paper's dataset (Wang et al. 2022, appendix E, and the authors' ioi_dataset.py): 15 templates
# written in BABA order ([B] = the subject S, [A] = the indirect object IO; the final [A] is the
# answer), their ABBA versions, and the names, places and objects they are filled with.

PAPER_BABA_TEMPLATES = (
    "Then, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Then, [B] and [A] had a lot of fun at the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Then, [B] and [A] were working at the [PLACE]. [B] decided to give a [OBJECT] to [A]",
    "Then, [B] and [A] were thinking about going to the [PLACE]. [B] wanted to give a [OBJECT] to [A]",
    "Then, [B] and [A] had a long argument, and afterwards [B] said to [A]",
    "After [B] and [A] went to the [PLACE], [B] gave a [OBJECT] to [A]",
    "When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give it to [A]",
    "When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give the [OBJECT] to [A]",
    "While [B] and [A] were working at the [PLACE], [B] gave a [OBJECT] to [A]",
    "While [B] and [A] were commuting to the [PLACE], [B] gave a [OBJECT] to [A]",
    "After the lunch, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Afterwards, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Then, [B] and [A] had a long argument. Afterwards [B] said to [A]",
    "The [PLACE] [B] and [A] went to had a [OBJECT]. [B] gave it to [A]",
    "Friends [B] and [A] found a [OBJECT] at the [PLACE]. [B] gave it to [A]",
)
# 99 first names (appendix E says 100; the authors' list has 99), each one GPT-2 token with a leading space.
PAPER_NAMES = (
    "Michael", "Christopher", "Jessica", "Matthew", "Ashley", "Jennifer", "Joshua", "Amanda", "Daniel", "David",
    "James", "Robert", "John", "Joseph", "Andrew", "Ryan", "Brandon", "Jason", "Justin", "Sarah", "William",
    "Jonathan", "Stephanie", "Brian", "Nicole", "Nicholas", "Anthony", "Heather", "Eric", "Elizabeth", "Adam",
    "Megan", "Melissa", "Kevin", "Steven", "Thomas", "Timothy", "Christina", "Kyle", "Rachel", "Laura", "Lauren",
    "Amber", "Brittany", "Danielle", "Richard", "Kimberly", "Jeffrey", "Amy", "Crystal", "Michelle", "Tiffany",
    "Jeremy", "Benjamin", "Mark", "Emily", "Aaron", "Charles", "Rebecca", "Jacob", "Stephen", "Patrick", "Sean",
    "Erin", "Jamie", "Kelly", "Samantha", "Nathan", "Sara", "Dustin", "Paul", "Angela", "Tyler", "Scott",
    "Katherine", "Andrea", "Gregory", "Erica", "Mary", "Travis", "Lisa", "Kenneth", "Bryan", "Lindsey", "Kristen",
    "Jose", "Alexander", "Jesse", "Katie", "Lindsay", "Shannon", "Vanessa", "Courtney", "Christine", "Alicia",
    "Cody", "Allison", "Bradley", "Samuel",
)
PAPER_PLACES = ("store", "garden", "restaurant", "school", "hospital", "office", "house", "station")
PAPER_OBJECTS = ("ring", "kiss", "bone", "basketball", "computer", "necklace", "drink", "snack")


def _paper_template(i: int, baba: str) -> T.Template:
    """Paper template ``i`` in this project's notation: first [B] -> {N1}, first [A] -> {N2}, the second [B]
    -> {S}, the final [A] -> {IO}; :func:`mechrepro.data.templates.ioi_fills` then gives ABBA or BABA."""
    text = baba.replace("[PLACE]", "{PLACE}").replace("[OBJECT]", "{OBJECT}")
    for old, new in (("[B]", "{N1}"), ("[A]", "{N2}"), ("[B]", "{S}"), ("[A]", "{IO}")):
        text = text.replace(old, new, 1)
    if "[" in text:
        raise ValueError(f"paper template {i} has an unexpected placeholder: {baba!r}")
    return T.Template(f"paper-{i:02d}", "ioi-paper", text, True)


PAPER_TEMPLATES = tuple(_paper_template(i + 1, t) for i, t in enumerate(PAPER_BABA_TEMPLATES))
VOCABULARIES = {"paper": (PAPER_NAMES, PAPER_PLACES, PAPER_OBJECTS), "toy": (V.NAMES, V.PLACES, V.OBJECTS)}
_BY_NAME = {t.name: t for t in (*T.TEMPLATES, *PAPER_TEMPLATES)}

# The circuit Wang et al. 2022 found in GPT-2 small (§3, Fig. 2): heads by class, each class acting at the position
# of their code's SEQ_POS_TO_KEEP (used by the faithfulness protocol of §4).
CLASS_POSITIONS = {"name_mover": "end", "backup_name_mover": "end", "negative_name_mover": "end",
                   "s_inhibition": "end", "induction": "s2", "duplicate_token": "s2", "previous_token": "s1+1"}
PAPER_CIRCUIT = Circuit({
    "name_mover": ((9, 9), (10, 0), (9, 6)),
    "backup_name_mover": ((10, 10), (10, 6), (10, 2), (10, 1), (11, 2), (9, 7), (9, 0), (11, 9)),
    "negative_name_mover": ((10, 7), (11, 10)),
    "s_inhibition": ((7, 3), (7, 9), (8, 6), (8, 10)),
    "induction": ((5, 5), (5, 8), (5, 9), (6, 9)),
    "duplicate_token": ((0, 1), (0, 10), (3, 0)),
    "previous_token": ((2, 2), (4, 11)),
}, CLASS_POSITIONS)
PAPER_CITATION = "Wang et al. 2022, Interpretability in the Wild (arXiv 2211.00593), §3 Fig. 2 and §4"


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
                     names=V.NAMES, places=V.PLACES, objects=V.OBJECTS,
                     templates: Sequence[T.Template] | None = None) -> IOIPrompts:
    """``n`` IOI prompts from ``templates`` (default: this project's held-out, or training, templates),
    cycling through them, ABBA and BABA alternating.

    Names, places and objects must each be one token with a leading space; a word that is not
    raises ValueError naming it (as does a template word the tokenizer does not know).
    """
    if n < 1:
        raise ValueError(f"need at least one IOI prompt, got n={n}")
    for w in (*names, *places, *objects):
        single_token_id(tokenizer, " " + w)
    rng = np.random.default_rng(seed)
    tmpl = tuple(templates) if templates is not None else T.templates("ioi", heldout)
    if not tmpl:
        raise ValueError("no IOI templates given")
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
    texts, tokens = [], []
    for f in prompts.fills:
        pool = [x for x in names if x not in (f["IO"], f["S"])]
        a, b, c = (str(x) for x in rng.choice(pool, size=3, replace=False))
        new = {**f, "N1": a, "N2": b, "S": c}
        text, toks, _ = _render_prompt(tokenizer, _BY_NAME[f["template"]].text, new, {})
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


# ---------------------------------------------------------------------------------------------
# The replication's dataset: the paper's templates, names, places and objects (or the toy vocabulary),
# clean prompts and their ABC corruptions, grouped so that every group has one length and one set of
# IO / S1 / S2 / END positions (templates differ in length; ABBA and BABA swap IO and S1).

@dataclass(frozen=True)
class IOIConfig:
    """The ``ioi`` section of a scale config (thresholds: see replications/ioi/README.md)."""

    model: str
    n_prompts: int
    vocabulary: str  # "paper": the paper's names / places / objects; "toy": the toy tokenizer's
    exclude_templates: tuple[str, ...]
    direct_threshold: float  # |path-patching effect on the logits| / clean logit diff for a (negative) name mover
    path_threshold: float  # effect through the receivers (queries / values / keys) for the earlier classes
    attention_threshold: float  # name movers attend END -> IO at least this much
    copy_threshold: float  # (negative) copy score of (negative) name movers
    copy_top_k: int
    n_random_k: int
    greedy_k: int
    seed: int
    paper_circuit: bool = False  # also validate Wang et al.'s GPT-2 small circuit (needs a 12 x 12 model)

    def __post_init__(self):
        if self.vocabulary not in VOCABULARIES:
            raise ValueError(f"ioi.vocabulary must be one of {sorted(VOCABULARIES)}, got {self.vocabulary!r}")
        unknown = set(self.exclude_templates) - {t.name for t in PAPER_TEMPLATES}
        if unknown:
            raise ValueError(f"ioi.exclude_templates: unknown templates {sorted(unknown)} (paper-01 .. paper-15)")
        if len(self.exclude_templates) >= len(PAPER_TEMPLATES):
            raise ValueError("ioi.exclude_templates excludes every template")
        if self.n_prompts < 2 * (len(PAPER_TEMPLATES) - len(self.exclude_templates)):
            raise ValueError("ioi.n_prompts: need at least two prompts (ABBA and BABA) per template")
        for k in ("direct_threshold", "path_threshold", "attention_threshold", "copy_threshold"):
            if not 0 < getattr(self, k) < 1:
                raise ValueError(f"ioi.{k} must be in (0, 1), got {getattr(self, k)}")
        for k in ("copy_top_k", "n_random_k", "greedy_k"):
            if getattr(self, k) < 1:
                raise ValueError(f"ioi.{k} must be >= 1, got {getattr(self, k)}")

    @classmethod
    def from_config(cls, section: dict) -> IOIConfig:
        s = dict(section)
        s["exclude_templates"] = tuple(s.get("exclude_templates", ()))
        return cls(**s)

    @property
    def templates(self) -> tuple[T.Template, ...]:
        return tuple(t for t in PAPER_TEMPLATES if t.name not in self.exclude_templates)


def ioi_dataset(tokenizer, cfg: IOIConfig) -> tuple[IOIPrompts, IOIPrompts]:
    """Clean prompts (the paper's templates, ABBA and BABA) and their ABC corruptions."""
    names, places, objects = VOCABULARIES[cfg.vocabulary]
    clean = make_ioi_prompts(tokenizer, cfg.n_prompts, cfg.seed, names=names, places=places, objects=objects,
                             templates=cfg.templates)
    return clean, abc_corruption(tokenizer, clean, cfg.seed + 1, names=names)


@dataclass(frozen=True)
class PromptGroup:
    """Prompts of one template and order: one length, one position per role."""

    template: str
    order: str
    index: torch.Tensor  # [n] indices into the prompt set
    clean: torch.Tensor  # [n pos]
    corrupted: torch.Tensor  # [n pos]
    io: torch.Tensor  # [n]
    s: torch.Tensor  # [n]
    positions: dict[str, int]  # io, s1, s2, end, s1+1

    def metric(self, logits: torch.Tensor) -> torch.Tensor:
        """Mean logit difference logit(IO) - logit(S) at END (the last position) of logits [n pos vocab]."""
        rows = torch.arange(len(self.io), device=logits.device)
        return (logits[rows, -1, self.io.to(logits.device)] - logits[rows, -1, self.s.to(logits.device)]).mean()


def group_prompts(clean: IOIPrompts, corrupted: IOIPrompts) -> list[PromptGroup]:
    """Split a prompt set into :class:`PromptGroup` s; raises if a group's prompts differ in length or in
    the position of a role (e.g. a name that is two tokens under this tokenizer)."""
    keys: dict[tuple[str, str], list[int]] = {}
    for i, (t, o) in enumerate(zip(clean.templates, clean.orders, strict=True)):
        keys.setdefault((t, o), []).append(i)
    groups = []
    for (t, o), idx in keys.items():
        lengths = {len(clean.tokens[i]) for i in idx} | {len(corrupted.tokens[i]) for i in idx}
        pos = {k: {int(clean.positions[k][i]) for i in idx} for k in ("io", "s1", "s2", "end")}
        if len(lengths) > 1 or any(len(v) > 1 for v in pos.values()):
            raise ValueError(f"IOI template {t} ({o}): prompts differ in length {sorted(lengths)} or role positions "
                             f"{ {k: sorted(v) for k, v in pos.items()} }; every filled word must be one token")
        p = {k: v.pop() for k, v in pos.items()}
        p["s1+1"] = p["s1"] + 1
        ix = torch.tensor(idx)
        groups.append(PromptGroup(t, o, ix, torch.tensor([clean.tokens[i] for i in idx]),
                                  torch.tensor([corrupted.tokens[i] for i in idx]), clean.io[ix], clean.s[ix], p))
    return groups


def over_groups(groups: list[PromptGroup], fn) -> torch.Tensor:
    """Prompt-weighted mean over groups of ``fn(group)`` (a tensor of any fixed shape): equal to ``fn`` of the
    whole set for metrics that are means over prompts, such as the logit difference."""
    total = sum(len(g.io) for g in groups)
    return sum(fn(g).float() * (len(g.io) / total) for g in groups)
