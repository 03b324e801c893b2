"""Seeded synthetic corpus for the toy models.

Each document is one training sequence of ``n_ctx`` tokens, beginning with BOS, and belongs to one
family (weights in :class:`CorpusConfig`); documents share a per-document *cast* (names, a place,
objects, nouns) that recurs across their sentences. Olsson et al. 2022 train on natural text; ours
imitates the kinds of repetition it has:

* ``recall``      -- arbitrary words in which earlier spans recur verbatim at varying gaps (the
  repetition induction heads exploit; the default mixture makes most documents of this kind, so that
  induction heads form within a CPU budget);
* ``narrative``   -- people visiting places and doing things with objects (recurring names);
* ``description`` -- adjectives and nouns from the cast;
* ``list``        -- lists of items, restated later in the same order;
* ``code``        -- short code-like lines reusing the same identifiers;
* ``arithmetic``  -- two-digit sums.

Non-recall documents also restate their own earlier lists and phrases now and then. Repetition is
*natural*: the model meets repeated names, phrases and spans inside documents, never the ``[BOS, r, r]``
probes it is evaluated on. Every token is one vocabulary word, so ids are looked up directly; the tests
check that the tokenizer gives the same ids for the document text. Per-token metadata records whether
a token repeats an earlier span (``is_repeat``) and the family of its document or sentence (``family``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mechrepro.data import vocab as V
from mechrepro.data.tokenizer import BOS, vocabulary

FAMILIES = ("narrative", "description", "recall", "list", "code", "arithmetic")
# Words a recalled span is drawn from: every vocabulary token that is a space-led word or number
# (stored without its space; _DocWriter.add puts it back).
RECALL_POOL = sorted({t[1:] for t in vocabulary() if t.startswith(" ") and t[1:].isalnum()})


@dataclass(frozen=True)
class CorpusConfig:
    """Size and mixture of the corpus. Checked on construction."""

    n_docs: int
    n_ctx: int
    seed: int
    family_weights: tuple[float, ...] = (0.06, 0.02, 0.8, 0.06, 0.03, 0.03)

    def __post_init__(self):
        if self.n_docs < 1:
            raise ValueError(f"corpus.n_docs must be >= 1, got {self.n_docs}")
        if self.n_ctx < 16:
            raise ValueError(f"corpus.n_ctx must be >= 16, got {self.n_ctx}")
        if len(self.family_weights) != len(FAMILIES) or min(self.family_weights) < 0 or sum(self.family_weights) <= 0:
            raise ValueError(f"corpus.family_weights must be {len(FAMILIES)} non-negative numbers ({FAMILIES})")


class _DocWriter:
    """Builds one document as token strings, with per-token metadata."""

    def __init__(self, rng: np.random.Generator, n_ctx: int):
        self.rng, self.n_ctx = rng, n_ctx
        self.toks: list[str] = [BOS]
        self.repeat: list[bool] = [False]
        self.family: list[int] = [-1]
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

    def add(self, words: list[str], family: int, repeat: bool = False) -> None:
        """Append words as tokens: a word gets its leading space, punctuation and newlines do not."""
        for w in words:
            tok = w if (w in V.PUNCT or w == "\n") else " " + w
            self.toks.append(tok)
            self.repeat.append(repeat)
            self.family.append(family)

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
        return ["\n", "def", self.pick(self.cast["nouns"]), "(", v, ")", ":", "return", v, "=", "value", "\n"]

    def arithmetic(self) -> list[str]:
        a, b = int(self.rng.integers(0, 50)), int(self.rng.integers(0, 50))
        return [f"{a:02d}", "and", f"{b:02d}", "is", f"{a + b:02d}", "."]

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
        """One family per document; non-recall documents restate earlier lists and phrases now and then."""
        fam = int(self.rng.choice(len(FAMILIES), p=weights))
        if FAMILIES[fam] == "recall":
            self.recall_document()
        makers = (self.narrative, self.description, self.recall_new, self.listing, self.code, self.arithmetic)
        while len(self.toks) < self.n_ctx:
            if self.spans and self.rng.random() < 0.3:
                self.add(self.spans[int(self.rng.integers(len(self.spans)))], fam, repeat=True)
            else:
                self.add(makers[fam if self.rng.random() < 0.7 else int(self.rng.integers(len(FAMILIES)))](), fam)
        del self.toks[self.n_ctx:], self.repeat[self.n_ctx:], self.family[self.n_ctx:]


def generate(cfg: CorpusConfig) -> dict[str, torch.Tensor]:
    """Generate the corpus: ``tokens``, ``is_repeat`` and ``family`` tensors of shape [n_docs, n_ctx]."""
    from tqdm.auto import tqdm

    ids = {tok: i for i, tok in enumerate(vocabulary())}
    weights = np.asarray(cfg.family_weights, dtype=float)
    weights /= weights.sum()
    rng = np.random.default_rng(cfg.seed)
    tokens = np.zeros((cfg.n_docs, cfg.n_ctx), dtype=np.int64)  # [doc pos]
    repeat = np.zeros((cfg.n_docs, cfg.n_ctx), dtype=bool)
    family = np.zeros((cfg.n_docs, cfg.n_ctx), dtype=np.int64)
    for d in tqdm(range(cfg.n_docs), desc="corpus", mininterval=2.0):
        w = _DocWriter(rng, cfg.n_ctx)
        w.build(weights)
        tokens[d] = [ids[t] for t in w.toks]
        repeat[d] = w.repeat
        family[d] = w.family
    return {"tokens": torch.from_numpy(tokens), "is_repeat": torch.from_numpy(repeat),
            "family": torch.from_numpy(family)}


def document_text(token_ids: list[int]) -> str:
    """The text of a document (BOS dropped): the concatenation of its tokens."""
    vocab = vocabulary()
    return "".join(vocab[i] for i in token_ids if vocab[i] != BOS)
