import hashlib
from pathlib import Path

import pytest

from mechrepro.data.corpus import CorpusConfig, document_text, generate
from mechrepro.data.tokenizer import build_tokenizer, load_tokenizer, save_tokenizer, single_token_id
from mechrepro.models.load import gpt2_tokenizer


def _hash(t):
    return hashlib.sha256(t.numpy().tobytes()).hexdigest()


def test_corpus_is_seeded_and_deterministic():
    a = generate(CorpusConfig(n_docs=50, n_ctx=32, seed=3))
    b = generate(CorpusConfig(n_docs=50, n_ctx=32, seed=3))
    c = generate(CorpusConfig(n_docs=50, n_ctx=32, seed=4))
    assert _hash(a["tokens"]) == _hash(b["tokens"]) and _hash(a["is_repeat"]) == _hash(b["is_repeat"])
    assert _hash(a["tokens"]) != _hash(c["tokens"])
    assert a["tokens"].shape == (50, 32) and (a["tokens"][:, 0] == 0).all()  # BOS first


def test_corpus_has_natural_repetition_marked_in_metadata():
    c = generate(CorpusConfig(n_docs=200, n_ctx=32, seed=0))
    rep = c["is_repeat"]
    assert 0.05 < rep.float().mean() < 0.6
    # A token marked as repeating an earlier span does occur earlier in its document.
    d, p = rep.nonzero()[0].tolist()
    assert c["tokens"][d, p] in c["tokens"][d, :p]


def test_tokenizer_reproduces_corpus_ids(tmp_path):
    tok = build_tokenizer()
    save_tokenizer(tok, tmp_path / "tokenizer.json")
    tok2 = load_tokenizer(tmp_path / "tokenizer.json")
    c = generate(CorpusConfig(n_docs=100, n_ctx=32, seed=1))
    for row in c["tokens"]:
        text = document_text(row.tolist())
        assert tok2.encode(text, add_special_tokens=False) == row[1:].tolist()
    assert (tmp_path / "tokenizer.json").read_bytes() == _save_bytes(tmp_path, build_tokenizer())


def _save_bytes(tmp_path: Path, tok) -> bytes:
    save_tokenizer(tok, tmp_path / "again.json")
    return (tmp_path / "again.json").read_bytes()


def test_toy_tokenizer_conventions():
    tok = build_tokenizer()
    assert tok.convert_ids_to_tokens(tok.encode(" 1732", add_special_tokens=False)) == ["Ġ17", "32"]
    assert single_token_id(tok, " Mary") != single_token_id(tok, " John")
    with pytest.raises(ValueError, match="'Zyxwv'.*not a single token"):
        single_token_id(tok, "Zyxwv")
    assert tok.encode("")[0] == tok.bos_token_id


def test_gpt2_tokenizer_offline_ids():
    tok = gpt2_tokenizer()
    assert tok.encode(" Mary John", add_special_tokens=False) == [5335, 1757]
    assert tok.convert_ids_to_tokens(tok.encode(" 1732", add_special_tokens=False)) == ["Ġ17", "32"]
    assert tok.bos_token_id == 50256 and len(tok) == 50257


@pytest.mark.parametrize("make", [build_tokenizer, gpt2_tokenizer])
def test_year_split(make):
    from mechrepro.data.tokenizer import year_token_ids

    tok = make()
    c, y = year_token_ids(tok, 1732)
    assert tok.convert_ids_to_tokens([c, y]) == ["Ġ17", "32"]
    with pytest.raises(ValueError, match="year 2024 is outside"):
        year_token_ids(tok, 2024)
