"""Head scores, per-token loss, ablations, K-composition of the main model (rule `induction_heads_analysis`)."""

from mechrepro.io import load_tensors, log_to, save_tensors, set_threads, write_csv, write_json
from mechrepro.models.load import best_device, is_random_weights, load_model
from mechrepro.tasks import induction_heads as ih

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
out, params = snakemake.output, snakemake.params

with log_to(snakemake.log[0]):
    set_threads(snakemake.threads)
    cfg = ih.InductionConfig.from_config(params.section)
    device = best_device()
    model = load_model(cfg.main_model, models_dir=params.models_dir, device=device)
    tensors = {k: v.to(device) for k, v in load_tensors(snakemake.input.probes).items()}
    probes = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("probe.")}
    reference = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("reference.")}

    induction, prev = ih.probe_scores(model, probes)
    scores = ih.heads_frame({"induction": induction, "prev_token": prev})
    heads = ih.circuit_heads(scores, cfg)
    ablation = ih.ablation_study(model, probes, reference, heads, cfg)
    composition, comp_summary = ih.composition_study(model, scores, cfg)
    top_prev = tuple(map(int, scores.loc[scores.prev_token.idxmax(), ["layer", "head"]]))
    longest = max(probes, key=lambda k: probes[k].shape[1])
    patterns = ih.top_head_patterns(model, probes[longest], [*heads["induction"][:2], top_prev])

    summary = {"model": cfg.main_model, "random_weights": is_random_weights(cfg.main_model), "device": device,
               "n_layers": model.cfg.n_layers, "n_heads": model.cfg.n_heads,
               "top_induction_heads": [f"{a}.{b}" for a, b in heads["induction"]],
               "previous_token_heads": [f"{a}.{b}" for a, b in heads["previous-token"]],
               "top_prev_token_head": f"{top_prev[0]}.{top_prev[1]}",
               "max_induction": induction.max().item(), "max_prev_token": prev.max().item(),
               **ih.ablation_summary(ablation), **comp_summary}
    if cfg.paper_heads:
        summary.update(ih.paper_head_match(scores))
    write_csv(out.scores, scores)
    write_csv(out.loss, ih.per_position_loss(model, probes))
    write_csv(out.ablation, ablation)
    write_csv(out.composition, composition)
    save_tensors(out.patterns, {**patterns, "probe": probes[longest][0]})
    write_json(out.summary, summary)
    print(summary)
