"""Linear probes and their controls (src/mechrepro/techniques/probing.py) on data with a known answer."""

import pytest
import torch

from mechrepro.techniques import probing as P


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    n, d = 2000, 8
    token_ids = torch.randint(0, 50, (n,), generator=g)
    x = torch.randn(n, d, generator=g)
    y = x[:, 0] + 0.5 * x[:, 1] > 1.0  # linearly readable, rare (~19%)
    idx = torch.randperm(n, generator=g)
    return x, y, token_ids, idx[: n // 2], idx[n // 2:]


def test_balanced_accuracy_by_hand():
    y = torch.tensor([True, False, False, False])
    assert P.balanced_accuracy(torch.zeros(4, dtype=torch.bool), y) == 0.5  # "always no" is chance, not 75%
    assert P.balanced_accuracy(torch.tensor([True, True, False, False]), y) == pytest.approx(0.5 * (1 + 2 / 3))
    assert P.balanced_accuracy(y, torch.zeros(4, dtype=torch.bool)) != P.balanced_accuracy(y, torch.zeros(4, dtype=torch.bool))


def test_a_readable_property_is_found_and_its_controls_are_not(data):
    x, y, tok, train, test = data
    r = P.probe_with_controls(x, y, tok, train, test)
    assert r.accuracy > 0.95 and not r.within_noise
    assert abs(sum(r.shuffled) / len(r.shuffled) - 0.5) < 0.15 and len(r.shuffled) == P.N_SHUFFLES  # chance, spread
    assert r.control < 0.65 and r.selectivity > 0.3  # 8 dimensions cannot memorise 50 token types


def test_noise_is_flagged_and_memorisation_shows_in_the_control_task(data):
    x, _, tok, train, test = data
    noise = torch.rand(len(x), generator=torch.Generator().manual_seed(1)) < 0.3
    assert P.probe_with_controls(x, noise, tok, train, test).within_noise
    # token identities one-hot: any labelling of types is readable, so the control task is learned too
    onehot = torch.nn.functional.one_hot(tok, 50).float()
    by_type = P.control_labels(tok, 0.3, seed=5)
    r = P.probe_with_controls(onehot, by_type, tok, train, test, seed=7)
    assert r.accuracy > 0.95 and r.control > 0.95 and abs(r.selectivity) < 0.05


def test_bad_input(data):
    x, y, tok, train, test = data
    with pytest.raises(ValueError, match="positive and negative tokens"):
        P.probe_with_controls(x, torch.zeros_like(y), tok, train, test)
    with pytest.raises(ValueError, match="NaN or inf"):
        P.fit_logistic(x.clone().fill_(float("nan")), y)
    with pytest.raises(ValueError, match="x must be"):
        P.fit_logistic(x[:, 0], y)
