"""Benchmarks, printed as tables (never asserted by tests: these machines are noisy).

    python -m mechrepro.bench training --model attn-only-2l [--steps 40] [--threads 2]
    python -m mechrepro.bench patching --model toy-lm --sweep head_by_pos --prompts 64
    python -m mechrepro.bench edges --model toy-lm --prompts 64 [--repeats 5]

``training`` times full optimisation steps (forward, backward, AdamW) of a registered toy recipe on
random tokens and reports tokens per second, the matmul FLOP rate those steps reach (counted with
``torch.utils.flop_counter``), and that rate as a fraction of this machine's matmul peak, measured
in the same run with a large fp32 matrix product.

``patching`` times one activation-patching sweep on held-out IOI prompts (clean) against their ABC
corruptions (IO, S1, S2 replaced by other names), metric the IO − S logit difference: our batched engine,
TransformerLens's ``patching`` function for that sweep, and attribution patching, side by side in
one run, with the speed-up over TransformerLens and the largest difference from its numbers. On a
GPU it also prints the FLOP floor of the sweep (every patched forward pass, counted with
``torch.utils.flop_counter``, at the measured matmul peak) and how close the engine comes to it.

``edges`` times edge-level scoring of the same IOI prompts (:mod:`mechrepro.techniques.edges`): our batched exact
edge patching against a naive loop of one hooked forward pass per edge (the reference: equal to 1e-4), and EAP and
EAP-IG against one plain forward and backward pass, each side run ``--repeats`` times interleaved, printing min /
median / max and ratios of medians.
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
from mechrepro.techniques.patching import SWEEPS


def matmul_peak_gflops(n: int = 1024, seconds: float = 1.0, device: str = "cpu") -> float:
    """fp32 GFLOP/s of an n x n matrix product, best of repeated timings."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    torch.mm(a, b)  # warm-up
    _sync(device)
    best, start = 0.0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
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


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device: str):
    _sync(device)
    t = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t


def patching_prompts(tokenizer, n: int, seed: int = 0):
    """``n`` clean IOI prompts of one held-out template, their ABC corruptions (IO, S1, S2 replaced by three
    other names, Wang et al.), and the clean IO / S token ids."""
    from mechrepro.data import vocab as V
    from mechrepro.models.capabilities import single_token_words
    from mechrepro.tasks.ioi import abc_corruption, make_ioi_prompts

    names = single_token_words(tokenizer, V.NAMES)[0]
    places, objects = single_token_words(tokenizer, V.PLACES)[0], single_token_words(tokenizer, V.OBJECTS)[0]
    p = make_ioi_prompts(tokenizer, 3 * n, seed, names=names, places=places, objects=objects)
    keep = [i for i, t in enumerate(p.templates) if t == p.templates[0]][:n]
    abc = abc_corruption(tokenizer, p, seed + 1, names=names)
    clean = torch.tensor([p.tokens[i] for i in keep])
    corrupted = torch.tensor([abc.tokens[i] for i in keep])
    return clean, corrupted, p.io[keep], p.s[keep]


def _model_and_prompts(args):
    """The benchmarked model on its device (``--threads`` applied) and ``--prompts`` IOI prompts there."""
    from mechrepro.models.load import best_device, load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or best_device()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = load_model(args.model, models_dir=args.models_dir, device=device)
    return model, device, [x.to(device) for x in patching_prompts(model.tokenizer, args.prompts)]


def _patching(args) -> None:
    from mechrepro.techniques import attribution as A
    from mechrepro.techniques import patching as P

    model, device, (clean, corrupted, io, s) = _model_and_prompts(args)
    rows = torch.arange(len(clean), device=device)

    def metric(logits):
        return (logits[rows, -1, io] - logits[rows, -1, s]).mean()

    def run_ours():  # the metric reads the final position only, so only it is unembedded
        return P.patch_sweep(model, args.sweep, metric, clean, corrupted, last_position_only=True)

    run_ours()  # warm-up
    ours, t_ours = _timed(run_ours, device)
    attr, t_attr = _timed(lambda: A.attribution_sweep(model, args.sweep, metric, clean, corrupted), device)
    ref, t_ref = (None, float("nan"))
    if not args.skip_reference:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref, t_ref = _timed(lambda: P.reference_sweep(model, args.sweep, metric, clean, corrupted), device)
    target = ref if ref is not None else ours
    print(f"patching benchmark: {args.model} on {device} ({torch.get_num_threads()} CPU threads), sweep "
          f"{args.sweep}, {len(clean)} prompts x {clean.shape[1]} tokens, {ours.numel()} patched indices")
    print(f"{'method':<22} {'seconds':>9} {'speed-up vs TL':>15} {'max |diff| vs TL':>17}")
    for name, t, val in (("TransformerLens", t_ref, ref), ("mechrepro (batched)", t_ours, ours),
                         ("attribution patching", t_attr, attr)):
        diff = float((val - target).abs().max()) if val is not None and ref is not None else float("nan")
        print(f"{name:<22} {t:>9.3f} {t_ref / t:>15.1f} {diff:>17.2e}")
    a = A.agreement(ours, attr)
    print(f"attribution vs activation patching: pearson r = {a['pearson']:.3f}, max |diff| = {a['max_abs_diff']:.3g}")
    if torch.device(device).type == "cuda":
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            model(corrupted)
        floor = ours.numel() * counter.get_total_flops() / (matmul_peak_gflops(n=8192, device=device) * 1e9)
        print(f"FLOP floor ({ours.numel()} full forward passes at the measured matmul peak): {floor:.3f} s; "
              f"ours is {t_ours / floor:.1f}x the floor")


def naive_exact_scores(model, graph, pairs):
    """The reference for exact edge patching: one hooked forward pass per edge, adding (corrupted - clean output
    of the edge's source) to its destination's input."""
    from mechrepro.techniques import edges as E
    from mechrepro.techniques.graph import dest_groups, split_inputs

    _, clean_out = E.outputs(model, pairs.clean)
    _, corr_out = E.outputs(model, pairs.corrupted)
    hook_of = {d: (name, j) for name, _, _, ds in dest_groups(graph) for j, d in enumerate(ds)}
    out = []
    with torch.inference_mode(), split_inputs(model):
        base = pairs.metric(model(pairs.clean))
        for d, u in graph.edge_index.tolist():
            name, j = hook_of[d]
            delta = corr_out[u] - clean_out[u]

            def hook(act, hook, delta=delta, j=j):
                act = act.clone()
                if act.ndim == 4:
                    act[:, :, j] += delta
                else:
                    act += delta
                return act
            out.append(pairs.metric(model.run_with_hooks(pairs.clean, fwd_hooks=[(name, hook)])) - base)
    return torch.stack(out, dim=1)


def _stats(times: list[float]) -> tuple[float, float, float]:
    import statistics

    return min(times), statistics.median(times), max(times)


def _edges(args) -> None:
    from mechrepro.techniques import edges as E
    from mechrepro.techniques.graph import Graph

    model, device, (clean, corrupted, io, s) = _model_and_prompts(args)
    rows = torch.arange(len(clean), device=device)
    pairs = E.Pairs(clean, corrupted, lambda logits: logits[rows, -1, io] - logits[rows, -1, s])
    graph = Graph.of(model)

    def fwd_bwd():
        model(clean)[rows, -1, io].sum().backward()
        model.zero_grad(set_to_none=True)
    sides = {"exact (batched)": lambda: E.exact_scores(model, graph, pairs),
             "exact (naive loop)": lambda: naive_exact_scores(model, graph, pairs),
             "EAP": lambda: E.eap_scores(model, graph, pairs),
             f"EAP-IG (m={args.ig_steps})": lambda: E.eap_scores(model, graph, pairs, ig_steps=args.ig_steps),
             "1 forward + backward": fwd_bwd}
    for fn in sides.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in sides}
    results = {}
    for _ in range(args.repeats):  # interleaved, so a noisy moment hits every side alike
        for name, fn in sides.items():
            results[name], t = _timed(fn, device)
            times[name].append(t)
    diff = float((results["exact (batched)"].cpu() - results["exact (naive loop)"].cpu()).abs().max())
    print(f"edge benchmark: {args.model} on {device} ({torch.get_num_threads()} CPU threads), {graph.n_edges} edges, "
          f"{len(clean)} prompts x {clean.shape[1]} tokens, {args.repeats} interleaved repeats")
    print(f"{'side':<24} {'min s':>8} {'median s':>9} {'max s':>8}")
    med = {}
    for name, ts in times.items():
        lo, med[name], hi = _stats(ts)
        print(f"{name:<24} {lo:>8.3f} {med[name]:>9.3f} {hi:>8.3f}")
    ig = f"EAP-IG (m={args.ig_steps})"
    print(f"exact: batched is {med['exact (naive loop)'] / med['exact (batched)']:.1f}x the naive loop (ratio of "
          f"medians); max |diff| {diff:.2e}")
    print(f"EAP costs {med['EAP'] / med['1 forward + backward']:.1f} and EAP-IG {med[ig] / med['1 forward + backward']:.1f}"
          " plain forward+backward passes (ratio of medians)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mechrepro.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("training", help="training throughput of a toy recipe")
    t.add_argument("--model", default="attn-only-2l")
    t.add_argument("--steps", type=int, default=40)
    t.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own)")
    t.set_defaults(func=_training)
    p = sub.add_parser("patching", help="activation-patching sweep: ours vs TransformerLens vs attribution")
    p.add_argument("--model", default="toy-lm")
    p.add_argument("--sweep", default="head_by_pos", help="one of: " + ", ".join(
        k for k, v in SWEEPS.items() if v.reference))
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--models-dir", default="results/toy/models", help="where toy models were trained")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if visible)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--skip-reference", action="store_true", help="skip TransformerLens (hours for GPT-2 on a CPU)")
    p.set_defaults(func=_patching)
    e = sub.add_parser("edges", help="edge scoring: batched exact vs a naive per-edge loop; EAP, EAP-IG")
    e.add_argument("--model", default="toy-lm")
    e.add_argument("--prompts", type=int, default=64)
    e.add_argument("--ig-steps", type=int, default=5)
    e.add_argument("--repeats", type=int, default=5)
    e.add_argument("--models-dir", default="results/toy/models", help="where toy models were trained")
    e.add_argument("--device", default=None, help="cpu or cuda (default: cuda if visible)")
    e.add_argument("--threads", type=int, default=0)
    e.set_defaults(func=_edges)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
