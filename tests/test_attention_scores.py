import pytest
import torch

from conftest import distinct_probes, tiny_attn_only
from mechrepro.techniques.attention_scores import attention_patterns, check_probes, induction_and_prev_scores


def test_hand_built_model_scores_find_exactly_the_built_heads(hand_model):
    probes = distinct_probes(8, 7, d_vocab=12)
    induction, prev = induction_and_prev_scores(hand_model, probes)
    assert induction.shape == prev.shape == (2, 2)
    assert divmod(int(induction.argmax()), 2) == (1, 0)
    assert divmod(int(prev.argmax()), 2) == (0, 0)
    assert induction[1, 0] > 0.95 and prev[0, 0] > 0.95
    others_ind = [induction[i, j] for i in range(2) for j in range(2) if (i, j) != (1, 0)]
    others_prev = [prev[i, j] for i in range(2) for j in range(2) if (i, j) != (0, 0)]
    assert max(others_ind) < 0.3 and max(others_prev) < 0.3


def test_hand_built_model_predicts_the_repeated_half(hand_model):
    probes = distinct_probes(4, 7, d_vocab=12)
    logits = hand_model(probes)
    # From the second occurrence of r_1 on, the argmax prediction is the next token of the sequence.
    pred = logits[:, 8:-1].argmax(-1)
    assert torch.equal(pred, probes[:, 9:])


def test_scores_match_a_brute_force_loop():
    model = tiny_attn_only(seed=3)
    g = torch.Generator().manual_seed(0)
    r = torch.randint(1, 50, (3, 6), generator=g)
    tokens = torch.cat([torch.zeros(3, 1, dtype=torch.long), r, r], dim=1)
    induction, prev = induction_and_prev_scores(model, tokens)
    pats = attention_patterns(model, tokens)  # [layer batch head q k]
    L = 6
    for layer in range(2):
        for head in range(4):
            ind_vals, prev_vals = [], []
            for b in range(3):
                for q in range(L + 1, 2 * L + 1):
                    ind_vals.append(pats[layer, b, head, q, q - L + 1].item())
                for q in range(2, 2 * L + 1):
                    prev_vals.append(pats[layer, b, head, q, q - 1].item())
            assert induction[layer, head].item() == pytest.approx(sum(ind_vals) / len(ind_vals), abs=1e-6)
            assert prev[layer, head].item() == pytest.approx(sum(prev_vals) / len(prev_vals), abs=1e-6)


@pytest.mark.parametrize("shape", [(2, 4), (2, 1, 3), (5,)])
def test_bad_probe_shapes_are_rejected(shape):
    with pytest.raises(ValueError, match="repeated-token probes"):
        check_probes(torch.zeros(shape, dtype=torch.long))
