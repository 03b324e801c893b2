"""Held-out IOI / Greater-Than / loss checks of one model (rule `capabilities`)."""

from mechrepro.io import load_tensors, log_to, set_threads, write_json
from mechrepro.models.capabilities import evaluate_capabilities
from mechrepro.models.load import best_device, is_random_weights, load_model, load_tokenizer_for

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
p = snakemake.params

with log_to(snakemake.log[0]):
    set_threads(snakemake.threads)
    device = best_device()
    model = load_model(p.model, models_dir=p.models_dir, device=device)
    heldout = load_tensors(snakemake.input.heldout[0])["tokens"].to(device) if snakemake.input.heldout else None
    result = evaluate_capabilities(model, load_tokenizer_for(p.model, p.models_dir), n_ioi=p.section["n_ioi_prompts"],
                                   n_years=p.section["n_year_prompts"], seed=p.section["seed"],
                                   heldout_tokens=heldout, required=p.section["required"].get(p.model))
    write_json(snakemake.output.capabilities, {"model": p.model, "random_weights": is_random_weights(p.model),
                                               "device": device, **result})
    print(p.model, {k: round(v, 4) for k, v in result["metrics"].items()}, result["checks"])
