"""Discover the IOI circuit by path patching and validate it (rule `ioi_analysis`)."""

import pandas as pd

from mechrepro.io import log_to, save_tensors, set_threads, write_csv, write_json
from mechrepro.models.load import best_device, is_random_weights, load_model
from mechrepro.tasks.ioi import PAPER_CITATION, IOIConfig
from mechrepro.tasks.ioi_circuit import ROLES, run_analysis
from mechrepro.techniques.circuits import name

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
out, params = snakemake.output, snakemake.params

with log_to(snakemake.log[0]):
    set_threads(snakemake.threads)
    section = dict(params.section)
    paper_circuit = section.pop("paper_circuit", False)
    cfg = IOIConfig.from_config(section)
    device = best_device()
    model = load_model(cfg.model, models_dir=params.models_dir, device=device)
    r = run_analysis(model, cfg, paper_circuit)

    tensors = {"resid": r["patching"]["resid"], "heads": r["patching"]["heads"],
               **{f"path.{k}": v for k, v in r["steps"].items()}}
    save_tensors(out.patching, tensors, metadata={"roles": ",".join(ROLES)})
    write_csv(out.heads, pd.DataFrame(r["heads"]))
    write_csv(out.completeness, pd.DataFrame(r["completeness"], columns=[
        "kind", "role", "K", "size", "F_C_minus_K", "F_M_minus_K", "incompleteness"]))
    write_csv(out.minimality, pd.DataFrame(r["minimality"], columns=[
        "part", "role", "K", "F_C_minus_K", "F_C_minus_K_and_v", "minimality"]))
    write_csv(out.scatter, pd.DataFrame(r["scatter"]))
    circuit = {"model": cfg.model, "random_weights": is_random_weights(cfg.model),
               "discovered": r["circuit"].to_json(), "stopped": r["summary"]["stopped"],
               "scatter_head": name(r["scatter_head"]), "paper": r["paper"].to_json(), "citation": PAPER_CITATION,
               "examples": r["examples"]}
    write_json(out.circuit, circuit)
    write_json(out.validation, r["validation"])
    write_json(out.summary, {"model": cfg.model, "random_weights": is_random_weights(cfg.model), "device": device,
                             "n_layers": model.cfg.n_layers, "n_heads": model.cfg.n_heads, **r["summary"]})
    print(r["summary"])
