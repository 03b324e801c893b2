"""Capability checks and model cards on a tiny random model (numbers meaningless, plumbing real)."""

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from mechrepro.data.tokenizer import build_tokenizer
from mechrepro.models.capabilities import evaluate_capabilities, single_token_words
from mechrepro.models.load import gpt2_tokenizer


@pytest.fixture(scope="module")
def tiny():
    tok = build_tokenizer()
    cfg = HookedTransformerConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=64, d_vocab=len(tok),
                                  act_fn="relu", normalization_type="LN", seed=0)
    return HookedTransformer(cfg, tokenizer=tok, move_to_device=False).eval(), tok


def test_capabilities_report_checks_that_can_fail(tiny):
    model, tok = tiny
    heldout = torch.randint(0, len(tok), (4, 64))
    out = evaluate_capabilities(model, tok, n_ioi=12, n_years=8, seed=0, heldout_tokens=heldout,
                                required={"ioi_accuracy": 0.9, "gt_prob_diff": -1.0})
    m = out["metrics"]
    assert 0 <= m["ioi_accuracy"] <= 1 and -1 <= m["gt_prob_diff"] <= 1 and m["heldout_loss"] > 0
    status = {c["metric"]: c["status"] for c in out["checks"]}
    assert status["gt_prob_diff"] == "pass"  # >= -1 always holds
    assert status["ioi_accuracy"] == ("pass" if m["ioi_accuracy"] >= 0.9 else "fail")
    groups = {r["group"] for r in out["ioi_breakdown"]}
    assert {"ABBA", "BABA", "ioi-afterwards", "ioi-argument", "ioi-got-the"} <= groups
    assert sum(r["ioi_n_prompts"] for r in out["ioi_breakdown"] if r["by"] == "order") == 12


def test_capabilities_fail_loudly_on_nan_weights(tiny):
    model, tok = tiny
    broken = HookedTransformer(model.cfg, tokenizer=tok, move_to_device=False).eval()
    with torch.no_grad():
        broken.W_U.fill_(float("nan"))
    with pytest.raises(ValueError, match="not finite"):
        evaluate_capabilities(broken, tok, n_ioi=4, n_years=4, seed=0)


def test_gpt2_drops_multi_token_words_and_says_which():
    kept, dropped = single_token_words(gpt2_tokenizer(), ["Mary", "John", "Zebediah"])
    assert kept == ["Mary", "John"] and dropped == ["Zebediah"]
