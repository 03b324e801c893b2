"""Discover the Greater-Than circuit by path patching and evaluate it (rule `greater_than_analysis`)."""

import pandas as pd
import torch

from mechrepro.io import log_to, save_tensors, set_threads, write_csv, write_json
from mechrepro.models.load import best_device, is_random_weights, load_model
from mechrepro.tasks.greater_than import GreaterThanConfig
from mechrepro.tasks.greater_than_circuit import CANONICAL_HEADS, PAPER_CIRCUIT, PAPER_CITATION, run_analysis
from mechrepro.techniques.circuits import name
from mechrepro.techniques.path_patching import MLP

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
out, params = snakemake.output, snakemake.params

with log_to(snakemake.log[0]):
    set_threads(snakemake.threads)
    section = dict(params.section)
    paper_circuit = section.pop("paper_circuit", False)
    cfg = GreaterThanConfig.from_config(section)
    device = best_device()
    model = load_model(cfg.model, models_dir=params.models_dir, device=device)
    r = run_analysis(model, cfg, paper_circuit)

    tensors = {f"path.{k}": v for k, v in r["steps"].items()}
    tensors |= {f"heatmap.{k}": v for k, v in r["heatmaps"].items()}
    tensors |= {f"mlp.{la}": m for la, m in enumerate(r["mlp_maps"])}
    tensors["attention_to_yy"] = r["attention_to_yy"]
    tensors["mlp_later_fraction"] = torch.tensor(r["mlp_later_fraction"])
    save_tensors(out.tensors, tensors)
    n_heads = model.cfg.n_heads
    rows = []  # every head and MLP: its effect at each step, its attention to YY, whether and where it is in the circuit
    for la in range(model.cfg.n_layers):
        for h in [*range(n_heads), MLP]:
            col = n_heads if h == MLP else h
            where = [role for role, parts in r["circuit"].roles.items() if (la, h) in parts]
            rows.append({"component": name((la, h)), "layer": la, "kind": "mlp" if h == MLP else "head",
                         "in_circuit_at": ",".join(where),
                         "attention_end_to_yy": None if h == MLP else float(r["attention_to_yy"][la, h]),
                         **{f"path_{k}": float(v[la, col]) for k, v in r["steps"].items()}})
    write_csv(out.components, pd.DataFrame(rows))
    write_csv(out.completeness, pd.DataFrame(r["completeness"], columns=[
        "kind", "role", "K", "size", "F_C_minus_K", "F_M_minus_K", "incompleteness"]))
    write_csv(out.minimality, pd.DataFrame(r["minimality"], columns=[
        "part", "role", "K", "F_C_minus_K", "F_C_minus_K_and_v", "minimality"]))
    gpt2_shaped = (model.cfg.n_layers, model.cfg.n_heads) == (12, 12)
    write_json(out.circuit, {"model": cfg.model, "random_weights": is_random_weights(cfg.model),
                             "discovered": r["circuit"].to_json(), "stopped": r["summary"]["stopped"],
                             "gpt2_shaped": gpt2_shaped, "paper": PAPER_CIRCUIT.to_json(),
                             "canonical_heads": CANONICAL_HEADS.to_json(), "citation": PAPER_CITATION,
                             "examples": r["examples"]})
    write_json(out.validation, r["validation"])
    write_json(out.summary, {"model": cfg.model, "random_weights": is_random_weights(cfg.model), "device": device,
                             "n_layers": model.cfg.n_layers, "n_heads": n_heads, **r["summary"]})
    print(r["summary"])
