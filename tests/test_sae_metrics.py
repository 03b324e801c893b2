"""SAE evaluation metrics (Bricken et al. 2023, *Towards Monosemanticity*) against hand-computed values and
brute-force references; the HTML rendering of contexts against injection; the figures write PNGs."""

import math
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
import torch

from mechrepro.plots import sae as P
from mechrepro.sae import metrics as M

# -- sparsity and reconstruction -----------------------------------------------------------------------------------


def test_l0_and_firing_frequency_by_hand():
    f = torch.tensor([[[1.0, 0.0, 2.0], [0.0, 0.0, 0.0]],
                      [[0.5, 0.0, 0.0], [3.0, 0.0, 1.0]]])  # [batch pos d_sae]: 2 + 0 + 1 + 2 = 5 over 4 tokens
    assert M.l0(f) == pytest.approx(1.25)
    freq = M.firing_frequency(f)
    assert freq.tolist() == pytest.approx([0.75, 0.0, 0.5])
    assert float(freq.sum()) == pytest.approx(M.l0(f))
    assert M.dead_fraction(freq) == pytest.approx(1 / 3)
    assert M.dense_fraction(freq) == pytest.approx(2 / 3)
    assert M.dense_fraction(freq, threshold=0.6) == pytest.approx(1 / 3)
    assert M.dense_fraction(torch.tensor([0.1, 0.2])) == 0.5  # strictly more than 10%


def test_fvu_by_hand():
    x = torch.tensor([[1.0, 0.0], [3.0, 2.0]])  # mean (2, 1): total variance 1 + 1 + 1 + 1 = 4
    assert M.fvu(x, x) == 0.0
    assert M.fvu(x, x.mean(0).expand_as(x)) == pytest.approx(1.0)
    assert M.fvu(x, torch.tensor([[1.0, 1.0], [3.0, 2.0]])) == pytest.approx(0.25)  # one error of 1
    assert M.fvu(x, torch.zeros_like(x)) == pytest.approx((1 + 9 + 4) / 4)


def test_ce_loss_recovered_by_hand():
    assert M.ce_loss_recovered(2.0, 3.5, 4.0) == pytest.approx(0.25)
    assert M.ce_loss_recovered(2.0, 2.0, 4.0) == 1.0
    assert M.ce_loss_recovered(2.0, 4.0, 4.0) == 0.0
    assert M.ce_loss_recovered(torch.tensor(3.0), torch.tensor(3.3), torch.tensor(6.0)) == pytest.approx(0.9)
    assert M.ce_loss_recovered(2.0, 5.0, 4.0) == pytest.approx(-0.5)  # worse than ablation


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="zero-ablation loss equals the clean loss"):
        M.ce_loss_recovered(2.0, 3.0, 2.0)
    with pytest.raises(ValueError, match="sae_loss is NaN"):
        M.ce_loss_recovered(2.0, float("nan"), 4.0)
    with pytest.raises(ValueError, match="differ in shape"):
        M.fvu(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="zero variance"):
        M.fvu(torch.ones(3, 2), torch.ones(3, 2))
    with pytest.raises(ValueError, match="x_hat contains NaN"):
        M.fvu(torch.randn(3, 2), torch.tensor([[0.0, float("nan")]] * 3))
    with pytest.raises(ValueError, match="NaN"):
        M.l0(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.dead_fraction(torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="labels must be a vector"):
        M.auroc(torch.randn(5, 2), torch.tensor([True, False, True]))
    with pytest.raises(ValueError, match="scores contains NaN"):
        M.auroc(torch.tensor([0.0, float("nan")]), torch.tensor([True, False]))
    with pytest.raises(ValueError, match="same d"):
        M.match_features(torch.randn(2, 3), torch.randn(4, 5))
    with pytest.raises(ValueError, match="zero rows"):
        M.mean_max_cosine(torch.randn(3, 4), torch.zeros(1, 4))


# -- density -------------------------------------------------------------------------------------------------------

def test_log_density_histogram():
    freq = torch.tensor([0.0, 0.0, 1e-3, 2e-3, 0.05, 0.5, 1.0])
    h = M.log_density_histogram(freq, bins=[-4.0, -3.0, -2.0, -1.0, 0.0])
    assert h.n_dead == 2 and h.n_features == 7
    assert h.counts.tolist() == [0, 2, 1, 2]  # 1e-3 and 2e-3 in [-3, -2); 0.05 in [-2, -1); 0.5 and 1 in [-1, 0]
    auto = M.log_density_histogram(freq, bins=6)
    assert auto.edges[0] == -3 and auto.edges[-1] == 0 and int(auto.counts.sum()) == 5
    with pytest.raises(ValueError, match="outside the edges"):
        M.log_density_histogram(freq, bins=[-2.0, 0.0])
    all_dead = M.log_density_histogram(torch.zeros(4), bins=3)
    assert all_dead.n_dead == 4 and int(all_dead.counts.sum()) == 0


# -- AUROC ---------------------------------------------------------------------------------------------------------

def _brute_auroc(s: np.ndarray, y: np.ndarray) -> float:
    pos, neg = s[y], s[~y]
    d = pos[:, None] - neg[None, :]
    return float(((d > 0).sum() + 0.5 * (d == 0).sum()) / d.size)


def test_auroc_matches_brute_force_with_ties():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 5, (60, 7), generator=g).float()  # many ties
    scores[:, 0] = torch.randn(60, generator=g)  # and one column without
    labels = torch.rand(60, generator=g) < 0.3
    got = M.auroc(scores, labels)
    want = [_brute_auroc(scores[:, j].numpy(), labels.numpy()) for j in range(7)]
    assert got.tolist() == pytest.approx(want, abs=1e-12)
    small_chunks = M.auroc(scores, labels, max_elements=60 * 2)  # chunking does not change the answer
    assert torch.allclose(small_chunks, got)
    assert float(M.auroc(scores[:, 3], labels.int())) == pytest.approx(want[3])


def test_auroc_known_cases():
    y = torch.tensor([False, False, True, True])
    assert float(M.auroc(torch.tensor([0.0, 1.0, 2.0, 3.0]), y)) == 1.0
    assert float(M.auroc(torch.tensor([3.0, 2.0, 1.0, 0.0]), y)) == 0.0
    assert float(M.auroc(torch.zeros(4), y)) == 0.5
    assert float(M.auroc(torch.tensor([0.0, 2.0, 1.0, 3.0]), y)) == 0.75  # 3 of 4 pairs ordered
    with pytest.raises(ValueError, match="both classes"):
        M.auroc(torch.randn(4), torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="boolean or 0/1"):
        M.auroc(torch.randn(3), torch.tensor([0, 1, 2]))


def test_best_unit_auroc_finds_planted_unit():
    g = torch.Generator().manual_seed(1)
    labels = torch.rand(500, generator=g) < 0.2
    acts = torch.randn(500, 30, generator=g)  # random units: AUROC ~ 0.5
    acts[:, 17] = labels.float() + 0.05 * torch.randn(500, generator=g)  # the planted detector
    best, i = M.best_unit_auroc(acts, labels)
    assert i == 17 and best > 0.999
    others = M.auroc(torch.cat([acts[:, :17], acts[:, 18:]], 1), labels)
    assert (others - 0.5).abs().max() < 0.15
    # an anti-correlated unit only counts when two-sided
    acts[:, 17] = -acts[:, 17]
    assert M.best_unit_auroc(acts, labels)[1] != 17
    best2, i2 = M.best_unit_auroc(acts, labels, two_sided=True)
    assert i2 == 17 and best2 > 0.999


def test_firing_precision_recall_by_hand():
    y = torch.tensor([True, True, True, True, False, False, False, False])
    # fires on 2 of the 4 positives and 1 negative: precision 2/3, recall 2/4
    assert M.firing_precision_recall(torch.tensor([1.0, 0.5, 0.0, -0.1, 2.0, 0.0, -0.2, 0.0]), y) == (2 / 3, 0.5)
    # a narrow, exact feature (one positive, nothing else) against a broad, leaky neuron (every positive, half the
    # negatives): the feature has the lower AUROC (coverage) and the higher precision (monosemanticity)
    narrow, broad = torch.tensor([3.0, 0, 0, 0, 0, 0, 0, 0]), torch.tensor([1.0, 1, 1, 1, 1, 1, -0.1, -0.1])
    assert M.firing_precision_recall(narrow, y) == (1.0, 0.25)
    assert M.firing_precision_recall(broad, y) == (4 / 6, 1.0)
    assert float(M.auroc(narrow, y)) < float(M.auroc(broad, y))
    p, r = M.firing_precision_recall(torch.zeros(8), y)  # never fires
    assert math.isnan(p) and r == 0.0
    with pytest.raises(ValueError, match=r"\[token\]"):
        M.firing_precision_recall(torch.zeros(8, 2), y)
    with pytest.raises(ValueError, match="both classes"):
        M.firing_precision_recall(torch.ones(8), torch.ones(8, dtype=torch.bool))


# -- feature splitting and MMCS ------------------------------------------------------------------------------------

def test_mmcs_of_permuted_rescaled_truth_is_one():
    g = torch.Generator().manual_seed(2)
    truth = torch.randn(6, 10, generator=g)
    learned = truth[torch.randperm(6, generator=g)] * torch.rand(6, 1, generator=g).add(0.5)
    learned = torch.cat([learned, torch.randn(3, 10, generator=g)])  # extra learned directions do not hurt
    assert M.mean_max_cosine(learned, truth) == pytest.approx(1.0)
    assert M.mean_max_cosine(-learned, truth) < 0.9  # signed: flipped directions are not the features
    e = torch.eye(2)
    assert M.mean_max_cosine(torch.tensor([[1.0, 1.0]]), e) == pytest.approx(2**-0.5)


def test_match_features_by_hand():
    small = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    large = torch.tensor([[1.0, 1.0, 0.0], [1.0, -1.0, 0.0], [0.0, 0.0, 2.0], [0.0, 1.0, 0.0]])
    m = M.match_features(small, large, threshold=0.5)
    h = 2**-0.5
    assert m.cos.flatten().tolist() == pytest.approx([h, h, 0, 0, 0, 0, 1, 0])
    assert m.matches == [[0, 1], [2]]  # feature 0 split into two children; feature 1 kept as is
    assert m.best.tolist() == [0, 2] and m.best_cos.tolist() == pytest.approx([h, 1.0])
    assert M.match_features(small, large, threshold=0.9).matches == [[], [2]]


# -- contexts and HTML ---------------------------------------------------------------------------------------------

def test_top_activating_contexts_2d_and_flat():
    ids = torch.arange(12).reshape(2, 6)  # [docs pos] token id = flat index
    acts = torch.zeros(2, 6)
    acts[0, 4], acts[1, 1], acts[1, 5] = 2.0, 3.0, 1.0
    ctx = M.top_activating_contexts(acts, ids, k=2, window=3)
    assert [(c["doc"], c["pos"], c["act"]) for c in ctx] == [(1, 1, 3.0), (0, 4, 2.0)]
    assert ctx[0]["token_ids"] == [6, 7] and ctx[0]["target"] == 1  # clipped at the document start
    assert ctx[1]["token_ids"] == [1, 2, 3, 4] and ctx[1]["acts"] == [0.0, 0.0, 0.0, 2.0]
    assert len(M.top_activating_contexts(acts, ids, k=10)) == 3  # only firing tokens
    flat = M.top_activating_contexts(acts.reshape(-1), ids.reshape(-1), k=3, window=2, after=1,
                                     doc_index=torch.tensor([0] * 6 + [1] * 6))
    assert [c["token_ids"] for c in flat] == [[6, 7, 8], [2, 3, 4, 5], [9, 10, 11]]  # never cross documents
    with pytest.raises(ValueError, match="contiguously"):
        M.top_activating_contexts(acts.reshape(-1), ids.reshape(-1), doc_index=torch.tensor([0, 1] * 6))
    with pytest.raises(ValueError, match="does not match"):
        M.top_activating_contexts(torch.zeros(5), ids)


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attrs, self.text = [], set(), []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs |= {k for k, _ in attrs}

    def handle_data(self, data):
        self.text.append(data)


def test_render_context_html_escapes_everything():
    evil = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', " a&b", "'"]
    out = M.render_context_html(evil, [0.0, 1.0, 0.5, 2.0], target=1)
    assert "<script" not in out and "<img" not in out
    assert "&lt;script&gt;" in out and "&quot;&gt;&lt;img" in out
    p = _Tags()
    p.feed(out)
    assert set(p.tags) == {"div", "span"} and p.attrs <= {"class", "style", "title"}
    assert "".join(p.text) == "".join(evil)  # the text survives, as text
    assert "rgba(255, 120, 0, 0.500)" in out and "rgba(255, 120, 0, 1.000)" in out
    assert out.count("outline") == 1
    with pytest.raises(ValueError, match="2 tokens but 1"):
        M.render_context_html(["a", "b"], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        M.render_context_html(["a"], [float("nan")])


# -- figures -------------------------------------------------------------------------------------------------------

def test_figures_write_pngs(tmp_path):
    g = torch.Generator().manual_seed(3)
    freqs = {"64 features": torch.tensor([0.0, 1e-4, 0.01, 0.2, 0.5]), "128 features": torch.rand(8, generator=g)}
    cos = M.match_features(torch.randn(4, 6, generator=g), torch.randn(9, 6, generator=g)).cos
    table = pd.DataFrame({"d_sae": [64, 128], "l0": [12.0, 9.0], "fvu": [0.2, 0.15], "ce_loss_recovered": [0.8, 0.85]})
    auc = pd.DataFrame({"latent": ["name", "digit"], "sae_auroc": [0.97, 0.9], "neuron_auroc": [0.7, 0.8]})
    P.density_histograms(freqs, tmp_path / "density.png")
    P.metrics_vs_size(table, tmp_path / "metrics.png")
    P.auroc_dumbbell(auc, tmp_path / "auroc.png")
    P.feature_splitting(cos, tmp_path / "split.png", n_show=2, n_top=3)
    for name in ("density", "metrics", "auroc", "split"):
        data = (tmp_path / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    with pytest.raises(ValueError, match="lacks columns"):
        P.metrics_vs_size(table.drop(columns="fvu"), tmp_path / "bad.png")


def test_auroc_many_equals_one_label_at_a_time():
    g = torch.Generator().manual_seed(3)
    scores = torch.randint(0, 4, (60, 7), generator=g).float()  # many ties
    labels = torch.rand(60, 3, generator=g) < torch.tensor([0.2, 0.5, 0.8])
    many = M.auroc_many(scores, labels, max_elements=100)  # several column blocks
    for j in range(3):
        torch.testing.assert_close(many[j], M.auroc(scores, labels[:, j]))
    with pytest.raises(ValueError, match="same tokens"):
        M.auroc_many(scores, labels[:5])
