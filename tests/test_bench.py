import pytest

from mechrepro.bench import main, matmul_peak_gflops


def test_training_benchmark_prints_a_table(capsys):
    main(["training", "--model", "attn-only-1l-ci", "--steps", "2", "--threads", "1"])
    out = capsys.readouterr().out
    assert "tokens/s" in out and "of peak" in out
    row = out.splitlines()[2].split()
    assert len(row) == 7 and row[-1].endswith("%")


def test_benchmark_rejects_models_it_cannot_train():
    with pytest.raises(SystemExit, match="not a toy recipe"):
        main(["training", "--model", "gpt2-random", "--steps", "1"])


def test_matmul_peak_is_positive():
    assert matmul_peak_gflops(n=128, seconds=0.05) > 0


def test_patching_benchmark_prints_ours_tl_and_attribution(capsys, monkeypatch):
    """On a tiny random model with the toy tokenizer (the real one needs training): the table has the
    three methods and ours agrees with TransformerLens."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    import mechrepro.models.load as load
    from mechrepro.data.tokenizer import build_tokenizer

    tok = build_tokenizer()
    cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=32, d_vocab=len(tok),
                                  act_fn="gelu", normalization_type="LN", seed=0)
    monkeypatch.setattr(load, "load_model", lambda *a, **k: HookedTransformer(cfg, tokenizer=tok).eval())
    main(["patching", "--model", "toy-lm", "--sweep", "head_by_pos", "--prompts", "4", "--threads", "1"])
    out = capsys.readouterr().out
    rows = {line[:22].strip(): line.split() for line in out.splitlines()[2:5]}
    assert set(rows) == {"TransformerLens", "mechrepro (batched)", "attribution patching"}
    assert float(rows["mechrepro (batched)"][-1]) < 1e-4  # max |diff| vs TransformerLens
    assert "pearson r" in out
