"""Figures of the IOI replication (rule `ioi_figures`)."""

import pandas as pd

from mechrepro.io import load_tensors, log_to, read_json
from mechrepro.plots import ioi as fig
from mechrepro.tasks.ioi_circuit import ROLES

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
inp, out = snakemake.input, snakemake.output

with log_to(snakemake.log[0]):
    summary, circuit = read_json(inp.summary), read_json(inp.circuit)
    tensors = load_tensors(inp.patching)
    model = summary["model"]
    fig.activation_patching(tensors, list(ROLES), model, out.activation)
    fig.path_patching(tensors, model, out.path)
    fig.attention_vs_projection(pd.read_csv(inp.scatter), circuit["scatter_head"], model, out.scatter)
    fig.circuit_diagram(circuit, summary["n_layers"], summary["n_heads"], out.circuit)
    completeness = pd.read_csv(inp.completeness, dtype={"K": str, "kind": str, "role": str}, keep_default_na=False)
    minimality = pd.read_csv(inp.minimality, dtype={"part": str, "role": str, "K": str}, keep_default_na=False)
    fig.validation(read_json(inp.validation), completeness, minimality, model, out.validation)
