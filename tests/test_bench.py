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
