"""Evaluate the SAEs against the paper's measures and the corpus's ground truth (rule `monosemanticity_evaluate`)."""

from pathlib import Path

import pandas as pd
import torch

from mechrepro.io import log_to, read_json, save_tensors, set_threads, write_csv, write_json
from mechrepro.models.load import best_device, is_random_weights, load_model
from mechrepro.models.registry import get_spec
from mechrepro.sae.data import corpus_split, training_tokens
from mechrepro.sae.evaluate import EvalConfig, evaluate_all
from mechrepro.sae.pretrained import evaluate_pretrained
from mechrepro.sae.train import load_sae

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
# long tables with explicit columns (empty, with their header, where the dataset records no latents)
SPECIFICITY = ["latent", "family", "expansion", "unit", "precision_select", "precision", "recall"]
AUTOINTERP = ["family", "expansion", "unit", "explanation", "score_select", "score"]
PROBES = ["model", "site", "layer", "feature", "latent", "accuracy", "shuffled_max", "control", "selectivity",
          "within_noise"]
inp, out, params = snakemake.input, snakemake.output, snakemake.params

with log_to(snakemake.log[0]):
    set_threads(snakemake.threads)
    section = params.section
    cfg = EvalConfig(**section["eval"])
    model = load_model(section["model"], models_dir=params.models_dir, device=best_device())
    saes = {int(Path(p).parent.name[1:]): load_sae(Path(p).parent) for p in inp.saes}
    if section["dataset"] == "corpus":
        data = corpus_split(inp.corpus[0], cfg.n_docs)
        tokens, latents = data["tokens"], data
    else:
        tokens, latents = training_tokens(section, inp.corpus, model.tokenizer, "heldout"), None
    probed = {m: model if m == section["model"] else load_model(m, models_dir=params.models_dir, device=best_device())
              for m in section.get("probes", {}).get("models", [])}
    r = evaluate_all(model, saes, tokens, latents, cfg, section["hook"], probed)
    summary = {"model": section["model"], "random_weights": is_random_weights(section["model"]), **r["summary"],
               **read_json(inp.superposition), **read_json(inp.planted)}
    if "pretrained" in section:  # the paper scale: SAELens's published SAEs on their own model
        pre = section["pretrained"]
        gpt2 = load_model(pre["model"], device=best_device())
        pre_tokens = training_tokens({**section, "dataset": pre["dataset"], "eval": {"n_docs": pre["n_docs"]}},
                                     [], gpt2.tokenizer, "heldout")
        # random SAEs only for a random-init model with no cache; a (fabricated) cache is read by SAE.from_pretrained
        p = evaluate_pretrained(gpt2, pre["release"], pre["layers"], pre_tokens, get_spec(pre["model"]).kind == "random",
                                pre["d_sae"])
        summary |= p["summary"] | {"pretrained.rows": p["rows"]}
        r["dashboards"]["pretrained"] = p["cards"]
    write_json(out.summary, summary)
    write_csv(out.dictionaries, pd.DataFrame(r["dictionaries"]))
    write_csv(out.ground_truth, pd.DataFrame(r["ground_truth"]))
    write_csv(out.specificity, pd.DataFrame(r["specificity"], columns=SPECIFICITY))
    write_csv(out.autointerp, pd.DataFrame(r["autointerp"], columns=AUTOINTERP))
    write_csv(out.probes, pd.DataFrame(r["probes"], columns=PROBES))
    write_json(out.features, {"contexts": r["contexts"], "splitting": r["splitting"], "steering": r["steering"],
                              "dashboards": r["dashboards"], "split_latent": r["split_latent"]})
    save_tensors(out.tensors, {f"freq.x{e}": f for e, f in r["frequencies"].items()} | {
        "splitting_cos": r["splitting_cos"] if r["splitting_cos"] is not None else torch.zeros(1, 1)})
    print({k: v for k, v in summary.items() if not isinstance(v, (list, dict))})
