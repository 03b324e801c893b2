"""The toy tokenizer: one token per word, GPT-2's leading-space convention, years split in two.

Built (not trained) from the word lists in :mod:`mechrepro.data.vocab`, as a Hugging Face
``PreTrainedTokenizerFast`` so that TransformerLens uses it exactly as it uses GPT-2's tokenizer.
A word becomes ``" word"`` (leading space) and ``"word"`` (sentence start); digits split into
two-digit groups (" 1732" -> " 17", "32") as GPT-2 does for most years.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from mechrepro.data import vocab as V

BOS, PAD, UNK = V.SPECIAL
# Words with optional leading space; two-digit groups (optionally space-led); punctuation.
_SPLIT = Regex(r" ?[A-Za-z_]+| ?\d\d| ?\d| ?[^\sA-Za-z\d]|\n|\s")


def vocabulary() -> list[str]:
    """Ordered token strings (before byte-level mapping). Deterministic: ids never depend on a seed."""
    words = [*V.NAMES, *V.PLACES, *V.OBJECTS, *V.NOUNS, *V.ADJECTIVES, *V.VERBS, *V.FUNCTION, *V.CODE,
             *V.IOI_WORDS, *V.EVENTS, *V.YEAR_WORDS, *V.DIALOGUE, *V.ARITHMETIC]
    cap = [w.capitalize() for w in (*V.FUNCTION, *V.ADJECTIVES)] + list(V.SENTENCE_STARTS)
    out = list(V.SPECIAL)
    for tok in [*(" " + w for w in words), *words, *cap, *(" " + c for c in cap),
                *V.PUNCT, *(" " + p for p in V.PUNCT), *V.DIGITS2, *(" " + d for d in V.DIGITS2), "\n", " "]:
        if tok not in out:
            out.append(tok)
    return out


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The toy tokenizer. Vocabulary keys are byte-level strings (" Mary" -> "ĠMary"), as in GPT-2."""
    encoder = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    vocab = {}
    for i, tok in enumerate(vocabulary()):
        key = tok if tok in V.SPECIAL else encoder.pre_tokenize_str(tok)[0][0]
        vocab[key] = i
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(_SPLIT, behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([BOS, PAD, UNK])
    return _wrap(tokenizer_object=tok)


def _wrap(**source) -> PreTrainedTokenizerFast:
    # name_or_path and add_bos_token=True: TransformerLens then uses this object as-is instead of
    # re-loading it by name from the hub. encode() prepends BOS; use add_special_tokens=False for words.
    return PreTrainedTokenizerFast(**source, bos_token=BOS, eos_token=BOS, pad_token=PAD, unk_token=UNK,
                                   name_or_path="mechrepro-toy", add_bos_token=True)


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, path: str | Path) -> None:
    """Write ``tokenizer.json`` (a plain JSON file; nothing pickled)."""
    from mechrepro.io import write_text

    write_text(path, tokenizer.backend_tokenizer.to_str(pretty=True))


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"tokenizer file not found: {path} (run the corpus rule first)")
    return _wrap(tokenizer_file=str(path))


def single_token_id(tokenizer, word: str) -> int:
    """Id of ``word`` (e.g. " Mary"); raises ValueError naming it if it is not exactly one token."""
    ids = tokenizer.encode(word, add_special_tokens=False)
    if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
        raise ValueError(f"{word!r} is not a single token of this tokenizer (got ids {ids})")
    return ids[0]


YEAR_RANGE = (1000, 1999)  # Hanna et al. 2023 use years 1000-1899 style: a century token and a two-digit token


def year_token_ids(tokenizer, year: int) -> tuple[int, int]:
    """(century, two-digit) ids of `` YYYY`` split GPT-2-style (" 1732" -> " 17", "32").

    Raises ValueError naming the year when it is outside :data:`YEAR_RANGE` or does not split into
    exactly those two tokens under ``tokenizer``.
    """
    lo, hi = YEAR_RANGE
    if not (isinstance(year, int) and lo <= year <= hi):
        raise ValueError(f"year {year!r} is outside the supported range {lo}-{hi}")
    ids = tokenizer.encode(f" {year}", add_special_tokens=False)
    pieces = tokenizer.convert_ids_to_tokens(ids)
    if len(ids) != 2 or pieces[1] != f"{year % 100:02d}":
        raise ValueError(f"year {year} does not split into a century and a two-digit token (got {pieces})")
    return ids[0], ids[1]
