"""Sentence templates of the IOI and Greater-Than tasks, split into training and held-out sets.

IOI (Wang et al. 2022, §2 and appendix A): two names are introduced (``{N1} and {N2}``), one of
them -- the subject S -- is mentioned again (``{S}``), and the sentence ends with the other one, the
indirect object IO (``{IO}``). In ABBA order the pair is (IO, S), in BABA order (S, IO).

Greater-Than (Hanna et al. 2023, §2): an event runs from year ``{X}`` to a later year ``{Y}`` of
the same century; years split GPT-2-style into a century token and a two-digit token.

Held-out templates never occur in the training corpus (whole templates are held out, not names or
years, so that every name's and year's embedding is trained); the capability checks and the IOI and
Greater-Than replications evaluate on them. Templates are written as plain text; :func:`render`
tokenizes them word by word, exactly as the toy tokenizer does (leading spaces kept on words).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Template:
    name: str
    task: str  # "ioi" | "years"
    text: str
    heldout: bool


IOI_TEMPLATES = (
    Template("ioi-went", "ioi", "Then, {N1} and {N2} went to the {PLACE}. {S} gave a {OBJECT} to {IO}", False),
    Template("ioi-fun", "ioi", "Then, {N1} and {N2} had a lot of fun at the {PLACE}. {S} gave a {OBJECT} to {IO}",
             False),
    Template("ioi-working", "ioi",
             "Then, {N1} and {N2} were working at the {PLACE}. {S} decided to give a {OBJECT} to {IO}", False),
    Template("ioi-thinking", "ioi", "Then, {N1} and {N2} were thinking about going to the {PLACE}. "
             "{S} wanted to give a {OBJECT} to {IO}", False),
    Template("ioi-after", "ioi", "After {N1} and {N2} went to the {PLACE}, {S} gave a {OBJECT} to {IO}", False),
    Template("ioi-got-it", "ioi", "When {N1} and {N2} got a {OBJECT} at the {PLACE}, {S} decided to give it to {IO}",
             False),
    Template("ioi-walking", "ioi", "While {N1} and {N2} were walking to the {PLACE}, {S} handed a {OBJECT} to {IO}",
             False),
    Template("ioi-friends", "ioi", "Friends {N1} and {N2} found a {OBJECT} at the {PLACE}. {S} gave it to {IO}",
             False),
    Template("ioi-quiet", "ioi", "The {PLACE} was quiet when {N1} and {N2} went there. {S} passed the {OBJECT} to {IO}",
             False),
    Template("ioi-talked", "ioi", "Then, {N1} and {N2} talked at the {PLACE}, and {S} said hello to {IO}", False),
    Template("ioi-threw", "ioi",
             "Afterwards, {N1} and {N2} were at the {PLACE}, and {S} threw the {OBJECT} to {IO}", False),
    Template("ioi-lunch", "ioi", "After the lunch, {N1} and {N2} went to the {PLACE}, and {S} talked to {IO}", False),
    Template("ioi-thanks", "ioi", "When {N1} and {N2} were at the {PLACE}, {S} said thanks to {IO}", False),
    Template("ioi-sent", "ioi", "While {N1} and {N2} were at the {PLACE}, {S} sent a {OBJECT} to {IO}", False),
    # held out: evaluation only
    Template("ioi-afterwards", "ioi", "Afterwards, {N1} and {N2} went to the {PLACE}. {S} gave a {OBJECT} to {IO}",
             True),
    Template("ioi-argument", "ioi", "Then, {N1} and {N2} had a long argument, and afterwards {S} said to {IO}", True),
    Template("ioi-got-the", "ioi",
             "When {N1} and {N2} got a {OBJECT} at the {PLACE}, {S} decided to give the {OBJECT} to {IO}", True),
)

YEARS_TEMPLATES = (
    Template("years-ran", "years", "The {EVENT} ran from the year {X} to the year {Y}", False),
    Template("years-started", "years", "The {EVENT} started in the year {X} and ended in the year {Y}", False),
    Template("years-began", "years", "The {EVENT} began in the year {X} and continued until the year {Y}", False),
    Template("years-continued", "years", "The {EVENT} continued from the year {X} until the year {Y}", False),
    # held out: Hanna et al.'s own template
    Template("years-lasted", "years", "The {EVENT} lasted from the year {X} to the year {Y}", True),
)

TEMPLATES = IOI_TEMPLATES + YEARS_TEMPLATES
TEMPLATE_IDS = {t.name: i for i, t in enumerate(TEMPLATES)}


def templates(task: str, heldout: bool) -> tuple[Template, ...]:
    return tuple(t for t in TEMPLATES if t.task == task and t.heldout == heldout)


# Same split as the toy tokenizer's pre-tokenizer, with {PLACEHOLDER}s kept whole.
_TOKEN = re.compile(r" ?\{[A-Z0-9]+\}| ?[A-Za-z_]+| ?\d\d| ?\d| ?[^\sA-Za-z\d]|\n")


def split_words(text: str) -> list[str]:
    """Pieces of ``text`` as the toy tokenizer splits it ("Then, Mary" -> ["Then", ",", " Mary"])."""
    return _TOKEN.findall(text)


def render(text: str, fills: dict[str, str | int], roles: dict[str, str] | None = None,
           leading_space: bool = False) -> list[tuple[str, str]]:
    """``(piece, role)`` pairs of ``text`` with its placeholders filled.

    A name or word fill becomes one piece (" Mary"); an integer fill is a year and becomes a century
    piece and a two-digit piece (" 1732" -> " 17", "32"), with roles ``<role>_century`` and
    ``<role>_yy``. ``roles`` maps a placeholder to its role name (default: the placeholder, lowercased).
    """
    roles = roles or {}
    out: list[tuple[str, str]] = []
    for piece in split_words((" " if leading_space else "") + text):
        space, core = (" ", piece[1:]) if piece.startswith(" ") else ("", piece)
        if not core.startswith("{"):
            out.append((piece, ""))
            continue
        key = core[1:-1]
        if key not in fills:
            raise KeyError(f"template placeholder {{{key}}} has no value (given: {sorted(fills)})")
        value, role = fills[key], roles.get(key, key.lower())
        if isinstance(value, int):
            out += [(f"{space}{value // 100}", f"{role}_century"), (f"{value % 100:02d}", f"{role}_yy")]
        else:
            out.append((f"{space}{value}", role))
    return out


def ioi_fills(order: str, io: str, s: str, place: str, obj: str) -> tuple[dict[str, str], dict[str, str]]:
    """Fills and roles of an IOI template for ``order`` "ABBA" (IO named first) or "BABA" (S first)."""
    if order not in ("ABBA", "BABA"):
        raise ValueError(f"IOI order must be 'ABBA' or 'BABA', got {order!r}")
    if io == s:
        raise ValueError(f"IOI needs two different names, got {io!r} twice")
    first, second = (io, s) if order == "ABBA" else (s, io)
    fills = {"N1": first, "N2": second, "S": s, "IO": io, "PLACE": place, "OBJECT": obj}
    roles = {"N1": "io" if order == "ABBA" else "s1", "N2": "s1" if order == "ABBA" else "io",
             "S": "s2", "IO": "io2", "PLACE": "place", "OBJECT": "object"}
    return fills, roles
