import pytest
import torch

from conftest import hand_built_induction_model, tiny_attn_only
from mechrepro.techniques.composition import composition_scores, model_composition_scores, random_baseline


@pytest.mark.parametrize("mode", ["K", "Q", "V"])
def test_matches_transformer_lens_all_composition_scores(mode):
    model = tiny_attn_only(n_layers=3, seed=1)
    ours = model_composition_scores(model, mode)
    with torch.no_grad():
        reference = model.all_composition_scores(mode)
    assert ours.shape == reference.shape == (3, 4, 3, 4)
    torch.testing.assert_close(ours, reference.float(), atol=1e-5, rtol=1e-4)


def test_dense_definition_on_one_pair():
    """||W_OV(h1) W_QK(h2)^T||_F / (||W_OV(h1)|| ||W_QK(h2)||), computed with full d_model matrices."""
    model = tiny_attn_only(seed=2)
    s = model_composition_scores(model, "K")
    W_OV = model.W_V[0, 1] @ model.W_O[0, 1]
    W_QK = model.W_Q[1, 2] @ model.W_K[1, 2].T
    dense = torch.linalg.norm(W_OV @ W_QK.T) / (torch.linalg.norm(W_OV) * torch.linalg.norm(W_QK))
    assert s[0, 1, 1, 2].item() == pytest.approx(dense.item(), rel=1e-4)
    assert torch.all(s[1, :, 0, :] == 0) and torch.all(s[0, :, 0, :] == 0)  # only earlier -> later


def test_hand_built_previous_token_head_k_composes_with_induction_head():
    model = hand_built_induction_model(d_vocab=12)
    s = torch.nan_to_num(model_composition_scores(model, "K"))  # zero-weight heads give 0/0
    # The built pair maps the same 12-dim token subspace end to end: ||AB|| / (||A|| ||B||) = 1/sqrt(12)
    # for two aligned rank-12 projections, the largest possible value at that rank.
    assert s[0, 0, 1, 0].item() == pytest.approx(12 ** -0.5, rel=1e-4)
    s[0, 0, 1, 0] = 0
    assert s.abs().max() < 1e-6


def test_random_baseline_is_small_and_seeded():
    a = random_baseline(64, 16, "K", n_samples=50, seed=0)
    b = random_baseline(64, 16, "K", n_samples=50, seed=0)
    assert torch.equal(a, b)
    assert 0 < a.mean() < 0.5


def test_bad_mode():
    with pytest.raises(ValueError, match="mode"):
        composition_scores(*(torch.zeros(1, 1, 4, 2),) * 3, torch.zeros(1, 1, 2, 4), mode="X")
