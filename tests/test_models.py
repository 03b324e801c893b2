import pytest
import torch

import mechrepro.models.train as train_mod
from mechrepro.data.tokenizer import build_tokenizer, save_tokenizer
from mechrepro.io import load_tensors, read_json, save_tensors
from mechrepro.models import ModelUnavailableError, get_spec, load_model
from mechrepro.models.registry import ToyRecipe, TrainRecipe
from mechrepro.models.train import checkpoint_steps, lr_at, train

RECIPE = ToyRecipe(name="attn-only-1l-ci", n_layers=1, d_model=16, n_heads=2, d_head=8, n_ctx=16,
                   normalization_type=None,
                   train=TrainRecipe(n_steps=30, batch_size=4, warmup_steps=5, resume_every=10, n_checkpoints=5,
                                     log_every=5))
VOCAB = 40


def _tokens():
    return torch.randint(0, VOCAB, (64, 16), generator=torch.Generator().manual_seed(0))


def test_schedule_warms_up_then_decays():
    r = RECIPE.train
    assert lr_at(0, r) < lr_at(4, r) == pytest.approx(r.lr)
    assert lr_at(r.n_steps - 1, r) == pytest.approx(r.lr * r.min_lr_frac, rel=0.05)
    steps = checkpoint_steps(TrainRecipe(n_steps=1000, batch_size=1, n_checkpoints=10))
    assert steps[-1] == 1000 and steps == sorted(set(steps)) and steps[1] / steps[0] > 1.5  # log-spaced


def test_training_is_deterministic(tmp_path):
    a = train(RECIPE, _tokens(), VOCAB, tmp_path / "a", progress=False)
    b = train(RECIPE, _tokens(), VOCAB, tmp_path / "b", progress=False)
    assert (tmp_path / "a/model.safetensors").read_bytes() == (tmp_path / "b/model.safetensors").read_bytes()
    assert a.final_loss == b.final_loss
    assert [c["step"] for c in a.checkpoints] == checkpoint_steps(RECIPE.train)
    for c in a.checkpoints:
        assert (tmp_path / "a" / c["path"]).exists()
    assert read_json(tmp_path / "a/checkpoints.json") == a.checkpoints


def test_killed_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    train(RECIPE, _tokens(), VOCAB, tmp_path / "full", progress=False)
    calls = {"n": 0}
    real = train_mod.lm_loss

    def dying(*args):
        calls["n"] += 1
        if calls["n"] == 24:  # dies in step 24; the newest resume state is at step 20
            raise KeyboardInterrupt("killed")
        return real(*args)

    monkeypatch.setattr(train_mod, "lm_loss", dying)
    with pytest.raises(KeyboardInterrupt):
        train(RECIPE, _tokens(), VOCAB, tmp_path / "killed", progress=False)
    assert not (tmp_path / "killed/model.safetensors").exists()  # nothing looks complete
    monkeypatch.setattr(train_mod, "lm_loss", real)
    result = train(RECIPE, _tokens(), VOCAB, tmp_path / "killed", progress=False)
    assert result.resumed_from_step == 20
    full, resumed = load_tensors(tmp_path / "full/model.safetensors"), load_tensors(tmp_path / "killed/model.safetensors")
    for k in full:
        assert torch.equal(full[k], resumed[k]), k
    # The log comes back from the resume state with integer steps and token counts, as an uninterrupted run's
    # (floats would print as 1.00352e+06 in train_log.csv past a million tokens).
    model, opt = train_mod._fresh(RECIPE, VOCAB)
    _, log, _, _ = train_mod._load_resume(tmp_path / "killed/checkpoints/resume.safetensors", model, opt,
                                    train_mod.run_fingerprint(RECIPE, _tokens(), VOCAB))
    assert log and all(type(step) is int and type(tokens) is int for step, tokens, _, _ in log)


def test_corrupt_resume_state_restarts_with_a_warning(tmp_path):
    out = tmp_path / "m"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints/resume.safetensors").write_bytes(b"\x00garbage")
    with pytest.warns(UserWarning, match="not a readable safetensors file"):
        result = train(RECIPE, _tokens(), VOCAB, out, progress=False)
    assert result.resumed_from_step == 0


def test_resume_state_of_another_recipe_is_not_used(tmp_path):
    import dataclasses

    train(RECIPE, _tokens(), VOCAB, tmp_path / "m", progress=False)
    (tmp_path / "m/checkpoints/step_999999.safetensors").write_bytes(b"stale")
    other = dataclasses.replace(RECIPE, train=dataclasses.replace(RECIPE.train, lr=RECIPE.train.lr / 2))
    with pytest.warns(UserWarning, match="another recipe or corpus"):
        result = train(other, _tokens(), VOCAB, tmp_path / "m", progress=False)
    assert result.resumed_from_step == 0
    # only this run's checkpoints are left
    kept = sorted(p.name for p in (tmp_path / "m/checkpoints").glob("step_*.safetensors"))
    assert kept == [c["path"].split("/")[-1] for c in result.checkpoints]


def test_load_toy_model_and_checkpoint(tmp_path):
    models_dir = tmp_path / "models"
    train(RECIPE, _tokens(), VOCAB, models_dir / RECIPE.name, progress=False)
    save_tokenizer(build_tokenizer(), models_dir / RECIPE.name / "tokenizer.json")
    import mechrepro.models.registry as reg

    reg.REGISTRY[RECIPE.name], saved = RECIPE, reg.REGISTRY[RECIPE.name]
    try:
        model = load_model(RECIPE.name, models_dir=models_dir)
        first = read_json(models_dir / RECIPE.name / "checkpoints.json")[0]["path"]
        early = load_model(RECIPE.name, models_dir=models_dir, checkpoint=first)
    finally:
        reg.REGISTRY[RECIPE.name] = saved
    tokens = _tokens()[:2]
    assert model(tokens).shape == (2, 16, VOCAB)
    assert not torch.equal(model.W_Q, early.W_Q)
    assert "blocks.0.attn.hook_pattern" in model.hook_dict


def test_truncated_weights_give_a_clear_error(tmp_path):
    path = tmp_path / "w.safetensors"
    save_tensors(path, {"x": torch.ones(100)})
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ValueError, match="not a readable safetensors file.*moved to w.safetensors.corrupt.*rerun"):
        load_tensors(path)
    assert not path.exists() and (tmp_path / "w.safetensors.corrupt").stat().st_size == 50  # kept, never read


@pytest.fixture
def registered(monkeypatch):
    import mechrepro.models.registry as reg

    monkeypatch.setitem(reg.REGISTRY, RECIPE.name, RECIPE)


@pytest.mark.parametrize("which", ["model.safetensors", "first checkpoint"])
def test_corrupt_weights_give_a_clear_error_and_the_rerun_retrains(tmp_path, registered, which):
    mdir = tmp_path / "models" / RECIPE.name
    train(RECIPE, _tokens(), VOCAB, mdir, progress=False)
    save_tokenizer(build_tokenizer(), mdir / "tokenizer.json")
    rel = "model.safetensors" if which == "model.safetensors" else read_json(mdir / "checkpoints.json")[0]["path"]
    good = {k: v.clone() for k, v in load_tensors(mdir / rel).items()}  # (loaded tensors map the file)
    blob = (mdir / rel).read_bytes()
    (mdir / rel).write_bytes(blob[: len(blob) // 2])  # truncated, as by a full disk
    with pytest.raises(ModelUnavailableError, match=r"not a readable safetensors file.*retrains"):
        load_model(RECIPE.name, models_dir=tmp_path / "models", checkpoint=None if which == "model.safetensors" else rel)
    # set aside, not deleted; the card too, so Snakemake sees the model missing and reruns its training
    assert (mdir / (rel + ".corrupt")).exists() and not (mdir / rel).exists() and not (mdir / "model.json").exists()
    if which == "model.safetensors":  # the resume state is intact: rebuilt from it, no step retrained
        result = train(RECIPE, _tokens(), VOCAB, mdir, progress=False)
        assert result.resumed_from_step == RECIPE.train.n_steps
    else:  # an early checkpoint can only be remade by training again from the start
        with pytest.warns(UserWarning, match="missing or unreadable; training from scratch"):
            result = train(RECIPE, _tokens(), VOCAB, mdir, progress=False)
        assert result.resumed_from_step == 0
    rebuilt = load_tensors(mdir / rel)  # (safetensors metadata order varies: compare tensors, not bytes)
    assert rebuilt.keys() == good.keys() and [k for k in good if not torch.equal(rebuilt[k], good[k])] == []
    assert load_model(RECIPE.name, models_dir=tmp_path / "models") is not None


def test_unknown_and_untrained_models():
    with pytest.raises(KeyError, match="unknown model 'gpt-7'.*gpt2-random"):
        get_spec("gpt-7")
    with pytest.raises(ModelUnavailableError, match="not trained yet"):
        load_model("attn-only-2l", models_dir="/nonexistent")


def test_gpt2_random_is_gpt2_small_shaped_with_the_real_tokenizer():
    model = load_model("gpt2-random")
    assert (model.cfg.n_layers, model.cfg.n_heads, model.cfg.d_model, model.cfg.d_vocab) == (12, 12, 768, 50257)
    assert model.to_str_tokens(" Mary", prepend_bos=False) == [" Mary"]
    assert "blocks.11.attn.hook_z" in model.hook_dict
    assert model.cfg.default_prepend_bos is False  # the convention from_pretrained is given too (test_fabricate.py)


class _Payload:
    """Not a tensor: an unpickler that accepts it would run whatever its __reduce__ returned."""


def test_pretrained_checkpoints_are_read_without_unpickling_code(tmp_path):
    """TransformerLens reads NeelNanda/* checkpoints with torch.load(weights_only=False); the project's loader forces
    torch's restricted loader around it: tensors load, an arbitrary object is refused."""
    import pickle

    from mechrepro.models.load import _weights_only

    torch.save({"W": torch.ones(2)}, tmp_path / "ok.pth")
    torch.save({"W": torch.ones(2), "x": _Payload()}, tmp_path / "bad.pth")
    with _weights_only():
        assert torch.equal(torch.load(tmp_path / "ok.pth", weights_only=False)["W"], torch.ones(2))
        with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
            torch.load(tmp_path / "bad.pth", weights_only=False)
