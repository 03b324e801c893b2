"""Figures of the Greater-Than replication (rule `greater_than_figures`)."""

from mechrepro.io import load_tensors, log_to, read_json
from mechrepro.plots import greater_than as fig
from mechrepro.techniques.circuits import Circuit, name
from mechrepro.techniques.path_patching import MLP

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
inp, out = snakemake.input, snakemake.output

with log_to(snakemake.log[0]):
    summary, circuit, validation = read_json(inp.summary), read_json(inp.circuit), read_json(inp.validation)
    t = {k: v.numpy() for k, v in load_tensors(inp.tensors).items()}
    model = summary["model"]
    fig.probability_heatmaps({k[8:]: v for k, v in t.items() if k.startswith("heatmap.")}, summary, model,
                             out.heatmaps)
    fig.path_patching({k[5:]: v for k, v in t.items() if k.startswith("path.")}, model, out.path)
    mlps = [t[f"mlp.{la}"] for la in range(summary["n_layers"]) if f"mlp.{la}" in t]
    discovered = Circuit.from_json(circuit["discovered"])
    circuit_mlps = [la for la, what in discovered.roles["end"] if what == MLP]
    fig.mlp_contributions(mlps, list(t["mlp_later_fraction"]), circuit_mlps, model, out.mlps)
    fig.circuit_diagram(circuit, summary["n_layers"], model, out.circuit)
    heads = [name(h) for h in discovered.heads]
    fig.faithfulness(validation, t["attention_to_yy"], heads, model, out.faithfulness)
