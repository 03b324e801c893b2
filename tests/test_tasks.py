"""IOI and Greater-Than prompts and metrics, checked by brute force and hand-set logits."""

import pytest
import torch

from mechrepro.data.tokenizer import build_tokenizer, single_token_id
from mechrepro.models.load import gpt2_tokenizer
from mechrepro.tasks.greater_than import make_year_prompts, prob_diff, two_digit_ids
from mechrepro.tasks.ioi import ioi_metrics, make_ioi_prompts


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def test_ioi_prompts_name_the_right_answer(tok):
    p = make_ioi_prompts(tok, 12, seed=0)
    assert set(p.orders) == {"ABBA", "BABA"} and len(set(p.templates)) == 3
    for text, ids, io, s, order in zip(p.texts, p.tokens, p.io.tolist(), p.s.tolist(), p.orders, strict=True):
        names = [t for t in ids if t in (io, s)]
        # ABBA: IO, S, S; BABA: S, IO, S -- and the prompt stops right before the answer
        assert names == ([io, s, s] if order == "ABBA" else [s, io, s]), text
        assert text.endswith(" to") and ids[0] == tok.bos_token_id


def test_ioi_rejects_names_that_are_not_one_token(tok):
    with pytest.raises(ValueError, match="' Zebediah' is not a single token"):
        make_ioi_prompts(tok, 4, seed=0, names=["Mary", "Zebediah"])
    with pytest.raises(ValueError, match="at least one"):
        make_ioi_prompts(tok, 0, seed=0)


def test_ioi_metrics_from_hand_set_logits(tok):
    p = make_ioi_prompts(tok, 4, seed=1)
    logits = torch.zeros(4, len(tok))
    margins = [3.0, 1.0, -2.0, 0.5]  # IO - S
    for i, m in enumerate(margins):
        logits[i, p.io[i]] = m
    logits[3, 7] = 9.0  # prompt 3: IO beats S but is not the top token
    m = ioi_metrics(logits, p)
    assert m["ioi_logit_diff"] == pytest.approx(sum(margins) / 4)
    assert m["ioi_accuracy"] == pytest.approx(3 / 4) and m["ioi_top1"] == pytest.approx(2 / 4)
    logits[0, 0] = float("nan")
    logits[0, p.io[0]] = float("nan")
    with pytest.raises(ValueError, match="not finite"):
        ioi_metrics(logits, p)


@pytest.mark.parametrize("make", [build_tokenizer, gpt2_tokenizer])
def test_year_prompts_stop_after_the_century(make):
    t = make()
    p = make_year_prompts(t, 6, seed=0)
    for text, yy in zip(p.texts, p.start_yy.tolist(), strict=True):
        start = text.split("from the year ")[1].split(" ")[0]
        assert int(start) % 100 == yy and text.endswith(f"to the year {start[:2]}")
    assert t.convert_ids_to_tokens(two_digit_ids(t)[[0, 32, 99]].tolist()) == ["00", "32", "99"]


def test_prob_diff_matches_a_brute_force_sum(tok):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, len(tok), generator=g) * 3
    start = torch.tensor([2, 30, 50, 97, 98])
    ids = two_digit_ids(tok)
    probs = torch.softmax(logits, -1)
    want = []
    for i in range(5):
        later = sum(probs[i, ids[y]].item() for y in range(100) if y > start[i])
        other = sum(probs[i, ids[y]].item() for y in range(100) if y <= start[i])
        want.append(later - other)
    assert prob_diff(logits, start, ids).tolist() == pytest.approx(want, abs=1e-6)
    # all mass on the year right after the start year -> +1; on the start year itself -> -1
    perfect = torch.full((2, len(tok)), -1e9)
    perfect[0, ids[31]] = 0
    perfect[1, ids[30]] = 0
    assert prob_diff(perfect, torch.tensor([30, 30]), ids).tolist() == pytest.approx([1.0, -1.0])


def test_year_errors_name_the_year(tok):
    from mechrepro.data.tokenizer import year_token_ids

    with pytest.raises(ValueError, match="year 2150 is outside"):
        year_token_ids(tok, 2150)
    assert single_token_id(tok, " war")


@pytest.mark.parametrize("make", [build_tokenizer, gpt2_tokenizer])
def test_ioi_positions_and_abc_corruption(make):
    from mechrepro.data import vocab as V
    from mechrepro.models.capabilities import single_token_words
    from mechrepro.tasks.ioi import abc_corruption

    t = make()
    names = single_token_words(t, V.NAMES)[0]
    places, objects = single_token_words(t, V.PLACES)[0], single_token_words(t, V.OBJECTS)[0]
    p = make_ioi_prompts(t, 12, seed=2, names=names, places=places, objects=objects)
    for i, ids in enumerate(p.tokens):
        pos = {k: int(v[i]) for k, v in p.positions.items()}
        assert ids[pos["io"]] == p.io[i] and ids[pos["s1"]] == p.s[i] and ids[pos["s2"]] == p.s[i]
        assert pos["end"] == len(ids) - 1 and pos["s1"] < pos["s2"] < pos["end"]
        assert (pos["io"] < pos["s1"]) == (p.orders[i] == "ABBA")
    abc = abc_corruption(t, p, seed=3, names=names)
    for i, (clean, corr) in enumerate(zip(p.tokens, abc.tokens, strict=True)):
        assert len(clean) == len(corr)  # same template, single-token names: the same positions
        at = [corr[int(p.positions[k][i])] for k in ("io", "s1", "s2")]
        assert len(set(at)) == 3 and not set(at) & {int(p.io[i]), int(p.s[i])}
        differ = [j for j in range(len(clean)) if clean[j] != corr[j]]
        assert set(differ) == {int(p.positions[k][i]) for k in ("io", "s1", "s2")}
