"""Attribution patching (Nanda 2023, *Attribution patching: activation patching at industrial scale*;
Syed et al. 2023): a first-order Taylor estimate of every patch of a sweep from one forward and one backward
pass, and how well it agrees with true activation patching."""

from __future__ import annotations

import torch
from torch import Tensor
from transformer_lens import HookedTransformer, utils

from mechrepro.techniques.engine import Metric, check_tokens, checked
from mechrepro.techniques.patching import Sweep, base_and_source, sweep_spec


def _reduce(s: Sweep, x: Tensor) -> Tensor:
    """Sum a per-element product [batch, ...] over everything a sweep index does not name."""
    if s.act == "pattern":  # [b, head, dest, src] -> [head] or [head, dest]
        return x.sum((0, 2, 3)) if s.axes == ("head",) else x.sum((0, 3))
    if s.act in ("z", "q", "k", "v"):  # [b, pos, head, d] -> [head] or [pos, head]
        return x.sum((0, 1, 3)) if s.axes == ("head",) else x.sum((0, 3))
    return x.sum((0, 2)) if s.axes == ("pos",) else x.sum()  # [b, pos, d] -> [pos] or []


def attribution_sweep(model: HookedTransformer, kind: str, metric: Metric, clean_tokens: Tensor,
                      corrupted_tokens: Tensor, *, direction: str = "clean_to_corrupted") -> Tensor:
    """Attribution-patching estimate of :func:`patch_sweep` (same shape: estimated metric values)."""
    s = sweep_spec(kind, model)
    check_tokens(model, clean_tokens, corrupted_tokens)
    base_tokens, source_tokens = base_and_source(model, clean_tokens, corrupted_tokens, direction, None)
    names = [utils.get_act_name(s.act, layer) for layer in range(model.cfg.n_layers)]
    with torch.inference_mode():
        _, src_cache = model.run_with_cache(source_tokens, names_filter=lambda n: n in names)
    acts, grads = {}, {}

    def keep_act(act, hook):
        acts[hook.name] = act.detach()

    def keep_grad(grad, hook):
        grads[hook.name] = grad.detach()

    with torch.enable_grad(), model.hooks(fwd_hooks=[(n, keep_act) for n in names],
                                          bwd_hooks=[(n, keep_grad) for n in names]):
        value = metric(model(base_tokens))
        if not torch.isfinite(value):
            raise ValueError("attribution patching: the metric of the base run is NaN or inf")
        value.backward()
    model.zero_grad(set_to_none=True)
    est = torch.stack([_reduce(s, (src_cache[n] - acts[n]) * grads[n]) for n in names])
    return checked(est.detach().cpu() + value.detach().cpu(), f"attribution sweep {kind!r}")


def agreement(true: Tensor, approx: Tensor) -> dict[str, float]:
    """How well an approximation (attribution patching) matches true activation patching."""
    t, a = true.flatten().double(), approx.flatten().double()
    tc, ac = t - t.mean(), a - a.mean()
    denom = float(tc.norm() * ac.norm())
    return {"pearson": float(tc @ ac) / denom if denom > 0 else float("nan"),
            "max_abs_diff": float((t - a).abs().max()), "mean_abs_diff": float((t - a).abs().mean()),
            "n": t.numel()}


