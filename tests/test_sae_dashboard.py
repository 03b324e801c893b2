"""Feature dashboards (src/mechrepro/sae/dashboard.py): the numbers of a feature with a known answer, escaping, the
index's links, and bad input."""

import re

import pytest
import torch

from mechrepro.sae import dashboard as D

VOCAB = ["<bos>", " a", " b", "</script><script>alert(1)</script>", " d", " e"]


def vocab(ids):
    return [VOCAB[int(i)] for i in ids]


@pytest.fixture()
def card():
    """A feature that fires 1, 2, 3, 4 on token 3 (the hostile one) in four places and nowhere else."""
    body = torch.tensor([[1, 3, 2, 3], [4, 3, 5, 3]])
    acts = torch.tensor([0.0, 1.0, 0.0, 2.0, 0.0, 3.0, 0.0, 4.0])
    decoder = torch.tensor([0.0, 3.0, -4.0])  # unit norm: 0.6, -0.8
    logit_dir = torch.tensor([0.0, 5.0, -2.0, 1.0, 0.5, -7.0])
    return D.feature_card(7, acts, decoder, logit_dir, body, vocab, "x4", k=2, window=1, n_bins=4, n_logits=2,
                          n_neurons=2)


def test_the_numbers_of_a_known_feature(card):
    assert card["density"] == pytest.approx(0.5) and card["max_act"] == pytest.approx(4.0)
    assert [c["act"] for c in card["top"]] == [4.0, 3.0]
    assert card["top"][0]["tokens"] == [" e", VOCAB[3]] and card["top"][0]["target"] == 1
    assert [round(c["act"]) for c in card["quantiles"]] == [2, 3, 4]  # the 25th/50th/75th of 1, 2, 3, 4
    assert sum(card["histogram"]["counts"]) == 4
    assert [x["token"] for x in card["logits_up"]] == [" a", VOCAB[3]]
    assert [x["token"] for x in card["logits_down"]] == [" e", " b"] and card["logits_down"][0]["value"] == -7.0
    assert card["neurons"] == [{"neuron": 2, "weight": pytest.approx(-0.8)}, {"neuron": 1, "weight": pytest.approx(0.6)}]


def test_html_escapes_every_token_and_links_the_index(card):
    page = D.card_html(card, {"latent": "name", "precision": 0.5, "explanation": "<b>x</b>", "score": 0.3})
    page += D.index_html([{"dictionary": "x4", "feature": 7, "density": 0.5, "max_act": 4.0, "latent": None,
                           "precision": None, "explanation": "a & <b>", "score": None}], {card["anchor"]})
    assert "<script>" not in page and "&lt;/script&gt;" in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert f'id="{card["anchor"]}"' in page and f'href="#{card["anchor"]}"' in page
    assert "n/a" in page and 'id="feature-index"' in page
    assert not re.search(r"https?://", page)  # nothing to load


def test_a_feature_that_never_fires_and_bad_ids():
    body = torch.tensor([[1, 2, 3]])
    card = D.feature_card(0, torch.zeros(3), torch.ones(3), torch.zeros(6), body, vocab, "x1")
    assert card["density"] == 0 and card["top"] == [] and card["histogram"] is None
    assert "never fires" in D.card_html(card)
    with pytest.raises(ValueError, match="feature 9 is outside dictionary x1"):
        D.check_ids([1, 9], 4, "x1")
    with pytest.raises(ValueError, match="NaN or inf"):
        D.feature_card(0, torch.tensor([0.0, float("nan"), 1.0]), torch.ones(3), torch.zeros(6), body, vocab, "x1")
    with pytest.raises(ValueError, match="2 activations for 3 tokens"):
        D.feature_card(0, torch.zeros(2), torch.ones(3), torch.zeros(6), body, vocab, "x1")


def test_choice_keeps_the_best_the_named_and_a_seeded_draw():
    scores = {f: f / 100 for f in range(60)}
    chosen = D.choose(scores, named=[3], n_best=20, n_random=5, seed=1)
    assert chosen[:20] == list(range(59, 39, -1)) and 3 in chosen and len(chosen) == 26
    assert chosen == D.choose(scores, named=[3], n_best=20, n_random=5, seed=1)
