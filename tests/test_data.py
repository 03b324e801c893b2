import hashlib
from pathlib import Path

import pytest

import mechrepro
from mechrepro.data import templates as T
from mechrepro.data.corpus import ROLES, CorpusConfig, corpus_meta, document_text, generate, generate_split
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


LM_SPEC = {"n_docs": 2000, "n_heldout": 50, "n_ctx": 64, "seed": 5,
           "mixture": {"ioi": 0.3, "years": 0.2, "recall": 0.1, "list": 0.05, "narrative": 0.1, "description": 0.05,
                       "dialogue": 0.1, "code": 0.05, "arithmetic": 0.05}}


@pytest.fixture(scope="module")
def lm_corpus():
    return generate_split(LM_SPEC, "train", progress=False)


def test_tokenizer_reproduces_corpus_ids(tmp_path, lm_corpus):
    tok = build_tokenizer()
    save_tokenizer(tok, tmp_path / "tokenizer.json")
    tok2 = load_tokenizer(tmp_path / "tokenizer.json")
    c = generate(CorpusConfig(n_docs=100, n_ctx=32, seed=1))
    for row in [*c["tokens"], *lm_corpus["tokens"][:200]]:
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


def test_gpt2_tokenizer_ships_with_the_package_and_is_hash_checked(tmp_path, monkeypatch):
    """A user's clone has no ../shared: the files come from the package, and a damaged copy is refused by name."""
    import shutil

    from mechrepro.models.load import GPT2_TOKENIZER_ENV, ModelUnavailableError, default_gpt2_tokenizer_dir

    monkeypatch.delenv(GPT2_TOKENIZER_ENV, raising=False)
    here = default_gpt2_tokenizer_dir()
    assert "shared" not in here.parts and here.is_relative_to(Path(mechrepro.__file__).parent)
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(here / f, tmp_path / f)
    (tmp_path / "merges.txt").write_text((tmp_path / "merges.txt").read_text().replace("Ġ t", "Ġ x", 1))
    monkeypatch.setenv(GPT2_TOKENIZER_ENV, str(tmp_path))
    with pytest.raises(ModelUnavailableError, match=r"merges\.txt has sha256 .* a damaged or different file"):
        gpt2_tokenizer()
    (tmp_path / "vocab.json").unlink()
    with pytest.raises(ModelUnavailableError, match=r"vocab\.json not found"):
        gpt2_tokenizer()


@pytest.mark.parametrize("make", [build_tokenizer, gpt2_tokenizer])
def test_year_split(make):
    from mechrepro.data.tokenizer import year_token_ids

    tok = make()
    c, y = year_token_ids(tok, 1732)
    assert tok.convert_ids_to_tokens([c, y]) == ["Ġ17", "32"]
    with pytest.raises(ValueError, match="year 2024 is outside"):
        year_token_ids(tok, 2024)


def test_corpus_and_tokenizer_are_bit_identical_across_runs(tmp_path, lm_corpus):
    """Same seed -> the same bytes: every tensor of the corpus, its meta hash, the tokenizer file."""
    again = generate_split(LM_SPEC, "train", progress=False)
    assert {k: _hash(v) for k, v in again.items()} == {k: _hash(v) for k, v in lm_corpus.items()}
    assert corpus_meta(LM_SPEC, again, 10)["sha256_tokens"] == corpus_meta(LM_SPEC, lm_corpus, 10)["sha256_tokens"]
    assert _save_bytes(tmp_path, build_tokenizer()) == _save_bytes(tmp_path, build_tokenizer())
    other = generate_split({**LM_SPEC, "seed": 6}, "train", progress=False)
    assert _hash(other["tokens"]) != _hash(lm_corpus["tokens"])
    heldout = generate_split(LM_SPEC, "heldout", progress=False)
    assert _hash(heldout["tokens"][:50]) != _hash(lm_corpus["tokens"][:50])


def test_corpus_mixture_is_checked():
    with pytest.raises(ValueError, match="unknown families.*'poetry'"):
        CorpusConfig(n_docs=5, n_ctx=32, seed=0, mixture={"poetry": 1.0})
    with pytest.raises(ValueError, match="non-negative"):
        CorpusConfig(n_docs=5, n_ctx=32, seed=0, mixture={"ioi": -1.0, "years": 2.0})


def test_ioi_latents_match_the_tokens(lm_corpus):
    """Every IOI sentence: IO and S are different names, S is mentioned twice, the sentence ends with IO;
    templates are training templates only; both orders occur."""
    tok, role, tmpl, order = (lm_corpus[k] for k in ("tokens", "role", "template", "order"))
    r = {name: ROLES.index(name) for name in ("io", "s1", "s2", "io2")}
    n_sentences = 0
    for d in range(len(tok)):
        pos = {k: (role[d] == v).nonzero().flatten().tolist() for k, v in r.items()}
        for p_io2 in pos["io2"]:  # one IOI sentence ends at each io2 token
            io = max(p for p in pos["io"] if p < p_io2)
            s1 = max(p for p in pos["s1"] if p < p_io2)
            s2 = max(p for p in pos["s2"] if p < p_io2)
            assert tok[d, io] == tok[d, p_io2] and tok[d, s1] == tok[d, s2] and tok[d, io] != tok[d, s1]
            assert (io < s1) == (order[d, p_io2] == 0)  # ABBA: IO named first
            assert max(io, s1) < s2 < p_io2
            n_sentences += 1
    assert n_sentences > 200
    used = set(tmpl.unique().tolist()) - {-1}
    heldout = {T.TEMPLATE_IDS[t.name] for t in T.TEMPLATES if t.heldout}
    assert used and not used & heldout
    assert set(order.unique().tolist()) == {-1, 0, 1}


def test_year_latents_end_after_start_in_the_same_century(lm_corpus):
    tok, role, year = lm_corpus["tokens"], lm_corpus["role"], lm_corpus["year"]
    vocab = build_tokenizer().convert_ids_to_tokens(list(range(len(build_tokenizer()))))
    n = 0
    for d, p in (role == ROLES.index("y_yy")).nonzero().tolist():
        x_pos = [q for q in (role[d, :p] == ROLES.index("x_yy")).nonzero().flatten().tolist()]
        x, y = int(year[d, x_pos[-1]]), int(year[d, p])
        assert x // 100 == y // 100 and y > x
        assert vocab[tok[d, p]] == f"{y % 100:02d}" and vocab[tok[d, p - 1]] == f"Ġ{y // 100}"
        n += 1
    assert n > 100


def test_heldout_prompts_never_occur_in_the_corpus(lm_corpus):
    """The evaluation prompts' templates are held out: no prompt text occurs verbatim in training text,
    while every token the prompts use is trained."""
    from mechrepro.tasks.greater_than import make_year_prompts
    from mechrepro.tasks.ioi import make_ioi_prompts

    tok = build_tokenizer()
    text = "\n".join(document_text(row.tolist()) for row in lm_corpus["tokens"])
    ioi, years = make_ioi_prompts(tok, 120, 0), make_year_prompts(tok, 60, 0)
    for prompt in [*ioi.texts, *years.texts]:
        assert prompt[prompt.index(" "):] not in text, prompt  # (the prompt without its first word)
    # ... while the training templates do occur (the check above can fail)
    train = make_ioi_prompts(tok, 50, 0, heldout=False)
    assert any(p.split(",")[-1] in text for p in train.texts)
    seen = set(lm_corpus["tokens"].unique().tolist())
    for ids in [*ioi.tokens, *years.tokens]:
        assert set(ids) <= seen | {tok.bos_token_id}


def test_templates_render_with_roles():
    pieces = T.render("When {N1} and {N2} went, {S} gave it to {IO} in {X}",
                      {**T.ioi_fills("BABA", "Mary", "John", "store", "ring")[0], "X": 1732},
                      T.ioi_fills("BABA", "Mary", "John", "store", "ring")[1])
    assert pieces[:4] == [("When", ""), (" John", "s1"), (" and", ""), (" Mary", "io")]
    assert pieces[-2:] == [(" 17", "x_century"), ("32", "x_yy")]
    with pytest.raises(ValueError, match="two different names"):
        T.ioi_fills("ABBA", "Mary", "Mary", "store", "ring")
    with pytest.raises(KeyError, match=r"\{PLACE\} has no value"):
        T.render("at the {PLACE}", {})
