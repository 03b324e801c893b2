"""The batched patching engine against TransformerLens's own patching functions, on tiny seeded models."""

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens import patching as tl_patching

from mechrepro.techniques.patching import SWEEPS, patch_every, patch_sweep, reference_sweep


def _model(attn_only=False, pos="standard", norm="LN"):
    cfg = HookedTransformerConfig(n_layers=3, d_model=16, n_heads=3, d_head=4, d_mlp=None if attn_only else 24,
                                  n_ctx=10, d_vocab=23, act_fn=None if attn_only else "gelu", attn_only=attn_only,
                                  normalization_type=norm, positional_embedding_type=pos, seed=1)
    torch.manual_seed(1)
    m = HookedTransformer(cfg, move_to_device=False).eval()
    with torch.no_grad():  # larger weights and non-trivial biases: patches have visible, distinct effects
        for p in m.parameters():
            if p.ndim == 1:
                p.normal_(0, 0.2)
            else:
                p.mul_(5 if norm else 2)  # (no LayerNorm: keep the logits moderate)
    return m


@pytest.fixture(scope="module")
def models():
    return {"gpt2-like": _model(), "attn-only-shortformer": _model(attn_only=True, pos="shortformer", norm=None)}


@pytest.fixture(scope="module")
def tokens():
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 23, (4, 7), generator=g), torch.randint(0, 23, (4, 7), generator=g)


def metric(logits):
    return (logits[:, -1, 3] - logits[:, -1, 5]).mean()


@pytest.mark.parametrize("kind", [k for k, s in SWEEPS.items() if s.reference])
@pytest.mark.parametrize("name", ["gpt2-like", "attn-only-shortformer"])
def test_every_sweep_equals_transformer_lens(models, tokens, kind, name):
    model = models[name]
    if model.cfg.attn_only and SWEEPS[kind].act in ("mlp_out", "resid_mid"):
        with pytest.raises(ValueError, match="attention-only"):
            patch_sweep(model, kind, metric, *tokens)
        return
    ours = patch_sweep(model, kind, metric, *tokens, memory_budget=20_000)  # small budget: several chunks
    ref = reference_sweep(model, kind, metric, *tokens)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)
    assert ours.std() > 1e-3  # the sweep is not trivially constant


@pytest.mark.parametrize("kind,tl_fn", [("head_all_pos_every", "get_act_patch_attn_head_all_pos_every"),
                                        ("head_by_pos_every", "get_act_patch_attn_head_by_pos_every")])
def test_every_variants_equal_transformer_lens(models, tokens, kind, tl_fn):
    model = models["gpt2-like"]
    _, clean_cache = model.run_with_cache(tokens[0])
    ref = getattr(tl_patching, tl_fn)(model, tokens[1], clean_cache, metric)
    torch.testing.assert_close(patch_every(model, kind, metric, *tokens), ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["gpt2-like", "attn-only-shortformer"])
@pytest.mark.parametrize("kind", ["head_by_pos", "resid_pre", "k_by_pos", "pattern_by_pos", "head_all_pos"])
def test_last_position_only_agrees(models, tokens, name, kind):
    model = models[name]
    full = patch_sweep(model, kind, metric, *tokens)
    last = patch_sweep(model, kind, metric, *tokens, last_position_only=True)
    torch.testing.assert_close(full, last, atol=2e-5, rtol=0)


@pytest.mark.parametrize("attn_only", [False, True])
@pytest.mark.parametrize("kind", ["head_by_pos", "q_by_pos", "attn_out", "mlp_out", "resid_mid"])
def test_one_query_fast_path_equals_transformer_lens(tokens, kind, attn_only):
    """Last-position local sweeps take the one-query-per-variant path (every position of a layer in one
    batch, hand-written attention). In a 3-layer model its three branches run: patch in the last layer, in
    the one before, and deeper."""
    model = _model(attn_only=attn_only)
    if attn_only and kind in ("mlp_out", "resid_mid"):
        return
    ref = reference_sweep(model, kind, metric, *tokens)
    ours = patch_sweep(model, kind, metric, *tokens, last_position_only=True, memory_budget=20_000)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)
    assert ours.std() > 1e-3
    for ablation in ("zero", "mean", "resample"):  # and against the general path, for the ablations
        slow = patch_sweep(model, kind, metric, tokens[0], ablation=ablation)
        fast = patch_sweep(model, kind, metric, tokens[0], ablation=ablation, last_position_only=True)
        torch.testing.assert_close(fast, slow, atol=2e-5, rtol=0)


def test_restricted_axes_agree(models, tokens):
    model = models["gpt2-like"]
    full = patch_sweep(model, "head_by_pos", metric, *tokens)
    part = patch_sweep(model, "head_by_pos", metric, *tokens, layers=[2, 0], positions=[-1], heads=[1])
    torch.testing.assert_close(part[:, 0, 0], full[[2, 0], -1, 1], atol=1e-5, rtol=0)


def test_noising_direction_and_ablations_by_brute_force(models, tokens):
    """corrupted->clean and zero / mean / resample ablations against a plain hooked loop."""
    model = models["gpt2-like"]
    clean, corrupted = tokens
    _, corr_cache = model.run_with_cache(corrupted)
    _, clean_cache = model.run_with_cache(clean)
    noising = patch_sweep(model, "head_all_pos", metric, clean, corrupted, direction="corrupted_to_clean")
    zero = patch_sweep(model, "head_all_pos", metric, clean, ablation="zero")
    mean = patch_sweep(model, "head_all_pos", metric, clean, ablation="mean")
    resample = patch_sweep(model, "head_all_pos", metric, clean, ablation="resample")
    for layer in range(3):
        for head in range(3):
            name = f"blocks.{layer}.attn.hook_z"
            z = clean_cache[name]
            for result, value in ((noising, corr_cache[name]), (zero, torch.zeros_like(z)),
                                  (mean, z.mean(0, keepdim=True).expand_as(z))):
                def hook(act, hook, value=value, head=head):
                    act[:, :, head] = value[:, :, head]
                    return act
                want = metric(model.run_with_hooks(clean, fwd_hooks=[(name, hook)]))
                assert result[layer, head].item() == pytest.approx(want.item(), abs=1e-5)
    assert not torch.allclose(zero, mean) and not torch.allclose(resample, mean)


def test_bad_input_is_named(models, tokens):
    model = models["gpt2-like"]
    clean, corrupted = tokens
    with pytest.raises(ValueError, match="differ in shape"):
        patch_sweep(model, "head_by_pos", metric, clean, corrupted[:, :5])
    with pytest.raises(ValueError, match="layer 3 is out of range"):
        patch_sweep(model, "head_by_pos", metric, clean, corrupted, layers=[3])
    with pytest.raises(ValueError, match="head -4 is out of range"):
        patch_sweep(model, "head_by_pos", metric, clean, corrupted, heads=[-4])
    with pytest.raises(ValueError, match="position 7 is out of range"):
        patch_sweep(model, "head_by_pos", metric, clean, corrupted, positions=[7])
    with pytest.raises(ValueError, match="NaN or inf"):
        patch_sweep(model, "head_all_pos", lambda logits: logits.mean() * float("nan"), clean, corrupted)
    with pytest.raises(ValueError, match="unknown sweep 'heads'"):
        patch_sweep(model, "heads", metric, clean, corrupted)
    with pytest.raises(ValueError, match="needs corrupted_tokens"):
        patch_sweep(model, "head_by_pos", metric, clean)


def _path_patch_reference(model, metric, clean, corrupted, sender, receivers, positions=None):
    """Wang et al.'s three steps, literally, one sender at a time: (1) cache both runs; (2) clean run with
    every head output and MLP output frozen at its clean value, except the sender's output (a head's, or an
    MLP's: (layer, "mlp")) from the corrupted run at ``positions``, caching the receivers' inputs; (3) clean
    run with only those inputs patched in. Receivers: (layer, head, "q"|"k"|"v") or (layer, "mlp")."""
    from transformer_lens import utils

    _, clean_cache = model.run_with_cache(clean)
    _, corr_cache = model.run_with_cache(corrupted)
    s_layer, s_what = sender
    pos = slice(None) if positions is None else list(positions)

    def freeze(act, hook):
        value = clean_cache[hook.name].clone()
        if s_what == "mlp" and hook.name == utils.get_act_name("mlp_out", s_layer):
            value[:, pos] = corr_cache[hook.name][:, pos]
        elif s_what != "mlp" and hook.name == utils.get_act_name("z", s_layer):
            value[:, pos, s_what] = corr_cache[hook.name][:, pos, s_what]
        return value

    frozen = [(utils.get_act_name("z", la), freeze) for la in range(model.cfg.n_layers)]
    if not model.cfg.attn_only:
        frozen += [(utils.get_act_name("mlp_out", la), freeze) for la in range(model.cfg.n_layers)]
    if receivers == "logits":
        return metric(model.run_with_hooks(clean, fwd_hooks=frozen)).item()
    model.set_use_split_qkv_input(True)
    if not model.cfg.attn_only:
        model.set_use_hook_mlp_in(True)
    try:
        def input_name(r):
            return f"blocks.{r[0]}.hook_mlp_in" if r[1] == "mlp" else f"blocks.{r[0]}.hook_{r[2]}_input"
        names = {input_name(r) for r in receivers}
        step2 = {}

        def keep(act, hook):
            step2[hook.name] = act.clone()

        model.run_with_hooks(clean, fwd_hooks=frozen + [(n, keep) for n in names])

        def patch(act, hook):
            for r in receivers:
                if hook.name == input_name(r):
                    if r[1] == "mlp":
                        act = step2[hook.name].clone()
                    else:
                        act[:, :, r[1]] = step2[hook.name][:, :, r[1]]
            return act

        return metric(model.run_with_hooks(clean, fwd_hooks=[(n, patch) for n in names])).item()
    finally:
        model.set_use_split_qkv_input(False)
        if not model.cfg.attn_only:
            model.set_use_hook_mlp_in(False)


@pytest.mark.parametrize("name", ["gpt2-like", "attn-only-shortformer"])
@pytest.mark.parametrize("receivers", ["logits", [(2, 1, "q"), (2, 0, "v")], [(1, 2, "k"), (2, 0, "q")]])
def test_path_patching_equals_the_three_step_reference(models, tokens, name, receivers):
    from mechrepro.techniques.path_patching import path_patch

    model = models[name]
    ours = path_patch(model, metric, *tokens, receivers=receivers, memory_budget=30_000)
    assert ours.shape == (3, 3)
    for la in range(3):
        for h in range(3):
            want = _path_patch_reference(model, metric, *tokens, (la, h), receivers)
            assert ours[la, h].item() == pytest.approx(want, abs=2e-5), (la, h)
    clean_metric = metric(model(tokens[0])).item()
    if receivers != "logits":  # heads at or after every receiver's layer cannot reach it
        last = max(la for la, _, _ in receivers)
        assert ours[last:].flatten().tolist() == pytest.approx([clean_metric] * (3 * (3 - last)), abs=1e-5)
    assert (ours - clean_metric).abs().max() > 1e-4  # some sender reaches the receivers
    last = path_patch(model, metric, *tokens, receivers=receivers, last_position_only=True, sender_positions=[1, 6])
    full = path_patch(model, metric, *tokens, receivers=receivers, sender_positions=[1, 6])
    torch.testing.assert_close(last, full, atol=2e-5, rtol=0)


@pytest.mark.parametrize("receivers", ["logits", [(2, "mlp")], [(1, "mlp"), (2, 1, "k")], [(2, "mlp"), (1, "mlp")]])
def test_path_patching_with_mlp_senders_and_receivers(models, tokens, receivers):
    """Hanna et al. 2023 path-patch MLPs as well as heads: every sender (heads and MLPs) at two positions, against
    the literal three-step procedure; the MLP column is last."""
    from mechrepro.techniques.path_patching import path_patch

    model = models["gpt2-like"]
    positions = [2, 6]
    ours = path_patch(model, metric, *tokens, receivers=receivers, sender_positions=positions, mlp_senders=True,
                      memory_budget=30_000)
    assert ours.shape == (3, 4)
    for la in range(3):
        for h in (0, 1, 2, "mlp"):
            want = _path_patch_reference(model, metric, *tokens, (la, h), receivers, positions)
            got = ours[la, 3 if h == "mlp" else h].item()
            assert got == pytest.approx(want, abs=2e-5), (la, h)
    clean_metric = metric(model(tokens[0])).item()
    assert (ours - clean_metric).abs().max() > 1e-4
    if receivers != "logits":  # an MLP reaches only receivers in later layers
        last = max(r[0] for r in receivers)
        assert ours[last:, 3].tolist() == pytest.approx([clean_metric] * (3 - last), abs=1e-5)
    listed = path_patch(model, metric, *tokens, receivers=receivers, sender_positions=positions,
                        senders=[(1, "mlp"), (0, 2)])
    torch.testing.assert_close(listed, torch.stack([ours[1, 3], ours[0, 2]]), atol=2e-5, rtol=0)
    last = path_patch(model, metric, *tokens, receivers=receivers, sender_positions=positions, mlp_senders=True,
                      last_position_only=True)
    torch.testing.assert_close(last, ours, atol=2e-5, rtol=0)


def test_path_patching_bad_receivers(models, tokens):
    from mechrepro.techniques.path_patching import path_patch

    with pytest.raises(ValueError, match="'o'"):
        path_patch(models["gpt2-like"], metric, *tokens, receivers=[(1, 0, "o")])
    with pytest.raises(ValueError, match="layer 5 is out of range"):
        path_patch(models["gpt2-like"], metric, *tokens, receivers=[(5, 0, "q")])
    with pytest.raises(ValueError, match="attention-only"):
        path_patch(models["attn-only-shortformer"], metric, *tokens, receivers=[(1, "mlp")])
    with pytest.raises(ValueError, match="attention-only"):
        path_patch(models["attn-only-shortformer"], metric, *tokens, mlp_senders=True)
    with pytest.raises(ValueError, match="head 7 is out of range"):
        path_patch(models["gpt2-like"], metric, *tokens, senders=[(0, 7)])


@pytest.mark.parametrize("kind", ["head_by_pos", "head_all_pos", "resid_pre", "pattern_all_pos", "v_by_pos"])
def test_attribution_patching_has_the_sweep_shape_and_reports_agreement(models, tokens, kind):
    from mechrepro.techniques.attribution import agreement, attribution_sweep

    model = models["gpt2-like"]
    true = patch_sweep(model, kind, metric, *tokens)
    est = attribution_sweep(model, kind, metric, *tokens)
    assert est.shape == true.shape and torch.isfinite(est).all()
    a = agreement(true, est)
    assert -1 <= a["pearson"] <= 1 and a["n"] == true.numel()


def test_attribution_patching_is_exact_where_the_model_is_linear(models, tokens):
    """Without LayerNorm the logits are linear in the last layer's attention output, and the metric is
    linear in the logits: there the first-order estimate must equal true patching; earlier layers
    (attention is not linear in its input) need not."""
    from mechrepro.techniques.attribution import attribution_sweep

    model = models["attn-only-shortformer"]
    true = patch_sweep(model, "attn_out", metric, *tokens)
    est = attribution_sweep(model, "attn_out", metric, *tokens)
    torch.testing.assert_close(est[-1], true[-1], atol=1e-4, rtol=0)
    assert (est[0] - true[0]).abs().max() > 1e-3
