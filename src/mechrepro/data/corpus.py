"""Seeded synthetic corpus for the toy models, each token carrying its latent variables.

Each document is one training sequence of ``n_ctx`` tokens, beginning with BOS, and belongs to one
family; a *mixture* (family -> weight, set per corpus in the scale config) says how often. Documents
share a per-document *cast* (names, a place, objects, nouns) that recurs across their sentences.

* ``recall``      -- arbitrary words in which earlier spans recur verbatim at varying gaps (the
  repetition induction heads exploit, Olsson et al. 2022; the attention-only models' mixture is mostly
  this, so that induction heads form within a CPU budget);
* ``list``        -- lists of items, restated later in the same order;
* ``ioi``         -- IOI-style narratives (Wang et al. 2022): two people, a place, an object, a transfer
  to the one not mentioned twice, from the *training* templates of :mod:`mechrepro.data.templates`,
  both ABBA and BABA orders, among distractor sentences (other names, pairs introduced without a
  transfer);
* ``years``       -- durations (Hanna et al. 2023): an event from year X to a later year Y of the same
  century, from the training templates, among other year mentions;
* fillers, so that the language is not only the test tasks: ``narrative``, ``description``,
  ``dialogue``, ``code`` and ``arithmetic``.

Held-out templates (the evaluation prompts of the IOI and Greater-Than replications) never occur;
names and years are not held out, so every name and year token is trained.

Every token is one vocabulary entry, so ids are looked up directly; the tests check that the
tokenizer gives the same ids for the document text. Latent variables, one value per token (for the
SAE ground-truth evaluation): ``family`` (of the sentence), ``is_repeat`` (restates an earlier span),
``role`` (index into :data:`ROLES`: IO / S mentions, place, object, event, year parts, ...),
``template`` (index into ``templates.TEMPLATES``, -1 if none), ``order`` (IOI: 0 ABBA, 1 BABA, -1) and
``year`` (the full year a year token belongs to, 0 otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from mechrepro.data import templates as T
from mechrepro.data import vocab as V
from mechrepro.data.tokenizer import BOS, vocabulary

FAMILIES = ("narrative", "description", "recall", "list", "code", "arithmetic", "ioi", "years", "dialogue")
ROLES = ("", "io", "s1", "s2", "io2", "place", "object", "event", "x_century", "x_yy", "y_century", "y_yy",
         "name", "number")
LATENTS = ("is_repeat", "family", "role", "template", "order", "year")
# Words a recalled span is drawn from: every vocabulary token that is a space-led word or number
# (stored without its space; _DocWriter.add puts it back).
RECALL_POOL = sorted({t[1:] for t in vocabulary() if t.startswith(" ") and t[1:].isalnum()})
# The attention-only models' mixture (induction heads need mostly recall documents to form on a CPU budget).
INDUCTION_MIXTURE = {"narrative": 0.06, "description": 0.02, "recall": 0.8, "list": 0.06, "code": 0.03,
                     "arithmetic": 0.03}
_IOI_TRAIN = T.templates("ioi", heldout=False)
_YEARS_TRAIN = T.templates("years", heldout=False)
_IOI_DISTRACTORS = ("Afterwards, {N1} went to the {PLACE}.", "The {PLACE} was {ADJ}.", "{N1} had a {OBJECT}.",
                    "Then, {N1} and {N2} went to the {PLACE}.", "{N1} liked the {OBJECT}.",
                    "{N1} and {N2} were {ADJ}.")
_YEARS_DISTRACTORS = ("The {EVENT} was {ADJ}.", "The {NOUN} was built in the year {X}.", "It was a long time.",
                      "The {EVENT} lasted a long time.", "In the year {X}, the {EVENT} began.")
# Roles of the filler placeholders (IOI and years sentences set their own).
_FILLER_ROLES = {"N1": "name", "N2": "name", "PLACE": "place", "OBJECT": "object", "EVENT": "event", "X": "x",
                 "ADJ": "", "NOUN": ""}
_DIALOGUE = ('{N1} asked {N2}: "where is the {OBJECT}?"', '{N2} replied: "the {OBJECT} is in the {PLACE}."',
             '{N1} said: "hello, {N2}."', '{N2} replied: "yes, thanks."', '"what is this?" asked {N1}.',
             '{N1} told {N2}: "no, please."', '"who is there?" asked {N2}.')


@dataclass(frozen=True)
class CorpusConfig:
    """Size and mixture of a corpus (``mixture``: family -> weight; absent families weigh 0). Checked."""

    n_docs: int
    n_ctx: int
    seed: int
    mixture: dict = field(default_factory=lambda: dict(INDUCTION_MIXTURE))

    def __post_init__(self):
        if self.n_docs < 1:
            raise ValueError(f"corpus.n_docs must be >= 1, got {self.n_docs}")
        if self.n_ctx < 16:
            raise ValueError(f"corpus.n_ctx must be >= 16, got {self.n_ctx}")
        unknown = sorted(set(self.mixture) - set(FAMILIES))
        if unknown:
            raise ValueError(f"corpus mixture: unknown families {unknown} (known: {', '.join(FAMILIES)})")
        w = list(self.mixture.values())
        if not w or min(w) < 0 or sum(w) <= 0:
            raise ValueError(f"corpus mixture weights must be non-negative with a positive sum, got {self.mixture}")

    def weights(self) -> np.ndarray:
        w = np.asarray([float(self.mixture.get(f, 0.0)) for f in FAMILIES])
        return w / w.sum()


class _DocWriter:
    """Builds one document as token strings, with per-token latent variables."""

    def __init__(self, rng: np.random.Generator, n_ctx: int):
        self.rng, self.n_ctx = rng, n_ctx
        self.toks: list[str] = [BOS]
        # BOS: no family, role, template or order
        self.lat = {"is_repeat": [False], "family": [-1], "role": [0], "template": [-1], "order": [-1], "year": [0]}
        self.spans: list[list[str]] = []  # phrases that may be recalled later
        self.cast = {
            "names": list(rng.choice(V.NAMES, size=3, replace=False)),
            "place": str(rng.choice(V.PLACES)),
            "objects": list(rng.choice(V.OBJECTS, size=2, replace=False)),
            "nouns": list(rng.choice(V.NOUNS, size=4, replace=False)),
            "adjs": list(rng.choice(V.ADJECTIVES, size=3, replace=False)),
        }

    def pick(self, seq):
        return str(seq[self.rng.integers(len(seq))])

    def _push(self, tok: str, family: int, repeat=False, role="", template=-1, order=-1, year=0) -> None:
        self.toks.append(tok)
        for k, v in (("is_repeat", repeat), ("family", family), ("role", ROLES.index(role)), ("template", template),
                     ("order", order), ("year", year)):
            self.lat[k].append(v)

    def add(self, words: list[str], family: int, repeat: bool = False) -> None:
        """Append words as tokens: a word gets its leading space, punctuation and newlines do not."""
        for w in words:
            self._push(w if (w in V.PUNCT or w == "\n") else " " + w, family, repeat)

    def add_text(self, text: str, family: int, fills: dict, roles: dict | None = None, template: int = -1,
                 order: int = -1) -> None:
        """Append a sentence written as text (see ``templates.render``); the document's first has no space."""
        roles = roles or {}
        years = {roles.get(k, k.lower()): v for k, v in fills.items() if isinstance(v, int)}
        for piece, role in T.render(text, fills, roles, leading_space=len(self.toks) > 1):
            year = years.get(role.rsplit("_", 1)[0], 0) if role.endswith(("_century", "_yy")) else 0
            self._push(piece, family, role=role, template=template, order=order, year=year)

    # -- word-list families (the induction mixture) --
    def narrative(self) -> list[str]:
        a, b = self.rng.choice(self.cast["names"], size=2, replace=False)
        place, obj = self.cast["place"], self.pick(self.cast["objects"])
        return [self.pick(["then", "after", "while"]), a, "and", b, "visited", "the", place, ",", a,
                self.pick(V.VERBS), "a", obj, "with", b, "."]

    def description(self) -> list[str]:
        return ["the", self.pick(self.cast["adjs"]), self.pick(self.cast["nouns"]), "was", "near", "the",
                self.pick(V.ADJECTIVES), self.pick(self.cast["nouns"]), "."]

    def recall_new(self) -> list[str]:
        # A quoted span of arbitrary words (any space-led token: names, numbers, identifiers...). Its
        # length scales with the context so that a span and its restatement fit in one document.
        n = int(self.rng.integers(3, max(5, self.n_ctx // 4)))
        span = [self.pick(RECALL_POOL) for _ in range(n)]
        self.spans.append(["\"", *span, "\""])
        return self.spans[-1]

    def listing(self) -> list[str]:
        items = list(self.rng.choice([*V.OBJECTS, *V.NOUNS], size=int(self.rng.integers(3, 7)), replace=False))
        self.spans.append(["items", ":", *[x for it in items for x in (it, ",")][:-1], "."])
        return self.spans[-1]

    def code(self) -> list[str]:
        v = self.pick(["x", "y", "z"])
        if self.rng.random() < 0.5:
            return ["\n", "def", self.pick(self.cast["nouns"]), "(", v, ")", ":", "return", v, "=", "value", "\n"]
        return ["\n", "for", v, "in", self.pick(self.cast["nouns"]), ":", "if", v, ":", "print", "(", v, ")",
                "else", ":", "result", "=", "value", "\n"]

    def arithmetic(self) -> list[str]:
        a, b = int(self.rng.integers(0, 50)), int(self.rng.integers(0, 50))
        if self.rng.random() < 0.5:
            return [f"{a:02d}", "and", f"{b:02d}", "is", f"{a + b:02d}", "."]
        hi, lo = max(a, b), min(a, b)
        return [f"{a + b:02d}", "minus", f"{hi:02d}", "equals", f"{lo:02d}", ";", f"{a:02d}", "plus", f"{b:02d}",
                "equals", f"{a + b:02d}", "."]

    # -- text families (the language-model mixture) --
    def _fills(self) -> dict:
        n1, n2 = self.rng.choice(self.cast["names"], size=2, replace=False)
        return {"N1": str(n1), "N2": str(n2), "PLACE": self.cast["place"], "OBJECT": self.pick(self.cast["objects"]),
                "ADJ": self.pick(self.cast["adjs"]), "NOUN": self.pick(self.cast["nouns"]),
                "EVENT": self.pick(V.EVENTS)}

    def ioi_sentence(self, fam: int) -> None:
        t = _IOI_TRAIN[int(self.rng.integers(len(_IOI_TRAIN)))]
        io, s = (str(x) for x in self.rng.choice(V.NAMES, size=2, replace=False))
        order = "ABBA" if self.rng.random() < 0.5 else "BABA"
        fills, roles = T.ioi_fills(order, io, s, self.pick(V.PLACES), self.pick(V.OBJECTS))
        self.add_text(t.text + ".", fam, fills, roles, template=T.TEMPLATE_IDS[t.name], order=int(order == "BABA"))

    def random_year(self, century: int | None = None) -> int:
        c = century if century is not None else int(self.rng.integers(10, 20))
        return c * 100 + int(self.rng.integers(0, 100))

    def years_sentence(self, fam: int) -> None:
        t = _YEARS_TRAIN[int(self.rng.integers(len(_YEARS_TRAIN)))]
        c, x = int(self.rng.integers(10, 20)), int(self.rng.integers(1, 99))
        y = int(self.rng.integers(x + 1, 100))
        fills = {**self._fills(), "X": c * 100 + x, "Y": c * 100 + y}
        self.add_text(t.text + ".", fam, fills, _FILLER_ROLES, template=T.TEMPLATE_IDS[t.name])

    def text_document(self, fam: int) -> None:
        name = FAMILIES[fam]
        while len(self.toks) < self.n_ctx:
            fills = self._fills()
            # Task documents open with a task sentence (as the evaluation prompts do) and are mostly task
            # sentences; the rest are distractors that mention other names, places and years.
            first = len(self.toks) == 1 and self.rng.random() < 0.8
            if name == "ioi" and (first or self.rng.random() < 0.75):
                self.ioi_sentence(fam)
            elif name == "years" and (first or self.rng.random() < 0.6):
                self.years_sentence(fam)
            elif name == "years":
                self.add_text(self.pick(_YEARS_DISTRACTORS), fam, {**fills, "X": self.random_year()}, _FILLER_ROLES)
            else:
                lines = _IOI_DISTRACTORS if name == "ioi" else _DIALOGUE
                self.add_text(self.pick(lines), fam, fills, _FILLER_ROLES)

    def recall_document(self) -> None:
        """Arbitrary words in which earlier spans recur verbatim, again and again, at varying gaps.

        Only the earlier occurrence predicts a recurrence: the situation induction heads solve. Span
        lengths and gaps vary, so no fixed offset works; later tokens of a document are more often
        inside a recurrence, so the loss falls along the context once the model uses it (Olsson et
        al.'s in-context-learning score).
        """
        fam = FAMILIES.index("recall")
        spans: list[list[str]] = []
        while len(self.toks) < self.n_ctx:
            if spans and self.rng.random() < 0.5:
                self.add(spans[int(self.rng.integers(len(spans)))], fam, repeat=True)
            else:
                n = int(self.rng.integers(3, max(4, self.n_ctx // 4)))
                spans.append([self.pick(RECALL_POOL) for _ in range(n)])
                self.add(spans[-1], fam)

    def build(self, weights: np.ndarray) -> None:
        """One family per document; word-list documents restate earlier lists and phrases now and then."""
        fam = int(self.rng.choice(len(FAMILIES), p=weights))
        if FAMILIES[fam] == "recall":
            self.recall_document()
        elif FAMILIES[fam] in ("ioi", "years", "dialogue"):
            self.text_document(fam)
        makers = (self.narrative, self.description, self.recall_new, self.listing, self.code, self.arithmetic)
        while len(self.toks) < self.n_ctx:
            if self.spans and self.rng.random() < 0.3:
                self.add(self.spans[int(self.rng.integers(len(self.spans)))], fam, repeat=True)
            else:
                self.add(makers[fam if self.rng.random() < 0.7 else int(self.rng.integers(len(makers)))](), fam)
        del self.toks[self.n_ctx:]
        for v in self.lat.values():
            del v[self.n_ctx:]


def generate(cfg: CorpusConfig, progress: bool = True) -> dict[str, torch.Tensor]:
    """Generate the corpus: ``tokens`` and the :data:`LATENTS`, each a tensor of shape [n_docs, n_ctx]."""
    from tqdm.auto import tqdm

    ids = {tok: i for i, tok in enumerate(vocabulary())}
    weights = cfg.weights()
    rng = np.random.default_rng(cfg.seed)
    tokens = np.zeros((cfg.n_docs, cfg.n_ctx), dtype=np.int64)  # [doc pos]
    lat = {k: np.zeros((cfg.n_docs, cfg.n_ctx), dtype=bool if k == "is_repeat" else np.int64) for k in LATENTS}
    for d in tqdm(range(cfg.n_docs), desc="corpus", mininterval=2.0, disable=not progress):
        w = _DocWriter(rng, cfg.n_ctx)
        w.build(weights)
        try:
            tokens[d] = [ids[t] for t in w.toks]
        except KeyError as err:
            raise ValueError(f"corpus word {err.args[0]!r} is not in the toy vocabulary (add it to vocab.py)") from None
        for k in LATENTS:
            lat[k][d] = w.lat[k]
    return {"tokens": torch.from_numpy(tokens), **{k: torch.from_numpy(v) for k, v in lat.items()}}


def document_text(token_ids: list[int]) -> str:
    """The text of a document (BOS dropped): the concatenation of its tokens."""
    vocab = vocabulary()
    return "".join(vocab[i] for i in token_ids if vocab[i] != BOS)


HELDOUT_SEED_OFFSET = 10_000  # held-out documents come from another seed: never seen in training


def generate_split(spec: dict, split: str, progress: bool = True) -> dict[str, torch.Tensor]:
    """The ``train`` or ``heldout`` split of a corpus given as a scale-config block
    (``n_docs``, ``n_heldout``, ``n_ctx``, ``seed``, ``mixture``)."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    n = spec["n_docs"] if split == "train" else spec["n_heldout"]
    seed = spec["seed"] + (HELDOUT_SEED_OFFSET if split == "heldout" else 0)
    return generate(CorpusConfig(n_docs=n, n_ctx=spec["n_ctx"], seed=seed, mixture=dict(spec["mixture"])),
                    progress=progress)


def corpus_meta(spec: dict, train: dict[str, torch.Tensor], d_vocab: int) -> dict:
    """What a corpus holds: sizes, mixture, token fractions per family, the held-out templates, hashes."""
    import hashlib

    fam = train["family"]
    return {
        **{k: spec[k] for k in ("n_docs", "n_heldout", "n_ctx", "seed")}, "mixture": dict(spec["mixture"]),
        "d_vocab": d_vocab, "train_tokens": int(train["tokens"].numel()),
        "families": list(FAMILIES), "roles": list(ROLES), "latents": list(LATENTS),
        "token_fraction": {f: float((fam == i).float().mean()) for i, f in enumerate(FAMILIES)},
        "repeat_fraction": float(train["is_repeat"].float().mean()),
        "templates": {t.name: {"task": t.task, "heldout": t.heldout, "text": t.text} for t in T.TEMPLATES},
        "sha256_tokens": hashlib.sha256(train["tokens"].numpy().tobytes()).hexdigest(),
    }
