import pytest
import torch

from conftest import distinct_probes, tiny_attn_only
from mechrepro.techniques.ablation import ablated_per_token_loss, mean_head_outputs
from mechrepro.techniques.losses import icl_score, per_token_loss, per_token_loss_from_logits


def _tokens(seed=0, batch=4, pos=12, vocab=50):
    return torch.randint(0, vocab, (batch, pos), generator=torch.Generator().manual_seed(seed))


def test_per_token_loss_by_hand():
    logits = torch.zeros(1, 3, 4)
    logits[0, 0, 2] = 2.0  # predicts token 2 at position 1
    tokens = torch.tensor([[0, 2, 1]])
    loss = per_token_loss_from_logits(logits, tokens)
    e = torch.e
    assert loss[0, 0].item() == pytest.approx(-torch.log(torch.tensor(e**2 / (e**2 + 3))).item(), rel=1e-6)
    assert loss[0, 1].item() == pytest.approx(torch.log(torch.tensor(4.0)).item(), rel=1e-6)


def test_icl_score_by_hand():
    loss = torch.tensor([[5.0, 4.0, 3.0, 1.0], [3.0, 2.0, 1.0, 1.0]])  # columns: tokens 1..4
    out = icl_score(loss, early=1, late=4)
    assert out["loss_early"] == pytest.approx(4.0)
    assert out["loss_late"] == pytest.approx(1.0)
    assert out["icl_score"] == pytest.approx(-3.0)
    with pytest.raises(ValueError, match="ICL token indices"):
        icl_score(loss, early=3, late=5)


def test_zero_ablation_equals_zeroing_w_o_and_b_o_share():
    model = tiny_attn_only(seed=4)
    tokens = _tokens()
    ours = ablated_per_token_loss(model, tokens, [(1, 2)], "zero")
    with torch.no_grad():
        model.blocks[1].attn.W_O[2] = 0.0
        reference = per_token_loss(model, tokens)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


def test_mean_ablation_equals_adding_the_mean_output_by_hand():
    model = tiny_attn_only(seed=5)
    tokens, reference_batch = _tokens(1), _tokens(2, batch=16)
    means = mean_head_outputs(model, reference_batch)  # [layer pos head d_head]
    ours = ablated_per_token_loss(model, tokens, [(0, 1)], "mean", means)
    # Brute force: remove the head's W_O, then add mean_z @ W_O to the attention output at each position.
    W_O = model.blocks[0].attn.W_O[1].detach().clone()
    delta = means[0, :, 1] @ W_O  # [pos d_model]
    with torch.no_grad():
        model.blocks[0].attn.W_O[1] = 0.0
    logits = model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.hook_attn_out", lambda x, hook: x + delta)])
    torch.testing.assert_close(ours, per_token_loss_from_logits(logits, tokens), atol=1e-5, rtol=1e-5)


def test_no_heads_is_the_clean_loss(hand_model):
    probes = distinct_probes(2, 5, 12)
    torch.testing.assert_close(ablated_per_token_loss(hand_model, probes, []), per_token_loss(hand_model, probes))


def test_ablating_the_built_induction_head_destroys_the_repeated_half(hand_model):
    probes = distinct_probes(4, 7, 12)
    clean = per_token_loss(hand_model, probes)[:, 8:].mean()
    ablated = ablated_per_token_loss(hand_model, probes, [(1, 0)], "zero")[:, 8:].mean()
    control = ablated_per_token_loss(hand_model, probes, [(0, 1)], "zero")[:, 8:].mean()
    assert ablated > clean + 1.0
    assert control == pytest.approx(clean.item(), abs=1e-5)


@pytest.mark.parametrize("heads,match", [([(2, 0)], "out of range"), ([(0, 4)], "out of range"), ([(-1, 0)], "out of range")])
def test_heads_out_of_range(heads, match):
    with pytest.raises(ValueError, match=match):
        ablated_per_token_loss(tiny_attn_only(), _tokens(), heads, "zero")


def test_bad_method_and_missing_means():
    with pytest.raises(ValueError, match="zero' or 'mean"):
        ablated_per_token_loss(tiny_attn_only(), _tokens(), [(0, 0)], "resample")
    with pytest.raises(ValueError, match="reference means"):
        ablated_per_token_loss(tiny_attn_only(), _tokens(), [(0, 0)], "mean")
