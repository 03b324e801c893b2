"""Benchmarks, printed as tables (never asserted by tests: these machines are noisy).

    python -m mechrepro.bench training --model attn-only-2l [--steps 40] [--threads 2]

``training`` times full optimisation steps (forward, backward, AdamW) of a registered toy recipe on
random tokens and reports tokens per second, the matmul FLOP rate those steps reach (counted with
``torch.utils.flop_counter``), and that rate as a fraction of this machine's matmul peak, measured
in the same run with a large fp32 matrix product.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformer_lens import HookedTransformer

from mechrepro.models.registry import REGISTRY, ToyRecipe, get_spec
from mechrepro.models.train import lm_loss


def matmul_peak_gflops(n: int = 1024, seconds: float = 1.0) -> float:
    """fp32 GFLOP/s of an n x n matrix product, best of repeated timings."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    best, start = 0.0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def training_throughput(recipe: ToyRecipe, d_vocab: int, steps: int, warmup: int = 5) -> dict[str, float]:
    """Time ``steps`` optimisation steps of ``recipe`` on random tokens (after ``warmup`` steps)."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # HookedTransformer's TransformerBridge notice
        model = HookedTransformer(recipe.tl_config(d_vocab), move_to_device=False)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.train.lr)
    tokens = torch.randint(0, d_vocab, (recipe.train.batch_size, recipe.n_ctx))

    def step():
        loss = lm_loss(model(tokens), tokens)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    for _ in range(warmup):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        last = step()
    float(last.detach())  # one sync at the end
    dt = (time.perf_counter() - t) / steps
    n_tok = recipe.train.batch_size * recipe.n_ctx
    return {"params": sum(p.numel() for p in model.parameters()), "tokens_per_step": n_tok,
            "step_ms": dt * 1e3, "tokens_per_s": n_tok / dt, "gflops": flops / dt / 1e9, "flop_per_step": flops}


def _training(args) -> None:
    from mechrepro.data.tokenizer import build_tokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    spec = get_spec(args.model)
    if not isinstance(spec, ToyRecipe):
        raise SystemExit(f"{args.model!r} is not a toy recipe; trainable models: "
                         + ", ".join(n for n, s in REGISTRY.items() if s.kind == "toy"))
    d_vocab = len(build_tokenizer())
    peak = matmul_peak_gflops()
    r = training_throughput(spec, d_vocab, args.steps)
    peak_after = matmul_peak_gflops()  # measured on both sides: the machine is shared and noisy
    peak = max(peak, peak_after)
    print(f"training benchmark: {args.model} on {torch.get_num_threads()} thread(s), {args.steps} timed steps")
    print(f"{'params':>10} {'tokens/step':>12} {'ms/step':>9} {'tokens/s':>10} {'GFLOP/s':>9} "
          f"{'peak GFLOP/s':>13} {'of peak':>8}")
    print(f"{r['params']:>10,} {r['tokens_per_step']:>12,} {r['step_ms']:>9.1f} {r['tokens_per_s']:>10,.0f} "
          f"{r['gflops']:>9.2f} {peak:>13.1f} {r['gflops'] / peak:>8.1%}")
    print("matmul peak: fp32 1024x1024 torch.mm, best timing, measured before and after in this run; "
          "step FLOPs counted by torch.utils.flop_counter (matmuls and attention).")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mechrepro.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("training", help="training throughput of a toy recipe")
    t.add_argument("--model", default="attn-only-2l")
    t.add_argument("--steps", type=int, default=40)
    t.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own)")
    t.set_defaults(func=_training)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
