"""Figures of the monosemanticity replication (rule `monosemanticity_figures`)."""

import pandas as pd

from mechrepro.io import load_tensors, log_to, read_json
from mechrepro.plots import placeholder
from mechrepro.plots import sae as fig
from mechrepro.plots import superposition as sup

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
inp, out = snakemake.input, snakemake.output

with log_to(snakemake.log[0]):
    summary = read_json(inp.summary)
    sup.all_figures(load_tensors(inp.superposition), read_json(inp.superposition_summary), out)
    fig.planted_cosines(pd.read_csv(inp.planted)["best_cosine"], summary, out.planted)
    model = summary["model"]
    table = pd.read_csv(inp.dictionaries).rename(columns={"ce_recovered": "ce_loss_recovered"})
    fig.metrics_vs_size(table, out.dictionaries, title=f"{model}: SAEs on the MLP neurons")
    t = load_tensors(inp.tensors)
    freqs = {f"{e:g}x ({d} features)": t[f"freq.x{e:g}"] for e, d in sorted(zip(table["expansion"], table["d_sae"], strict=True))}
    fig.density_histograms(freqs, out.density, title=f"{model}: feature density on held-out tokens")
    try:
        truth = pd.read_csv(inp.ground_truth)
    except pd.errors.EmptyDataError:  # a dataset without latents
        truth = pd.DataFrame()
    large = int(table["expansion"].max())
    if len(truth):
        fig.auroc_dumbbell(truth.rename(columns={f"auroc_x{large}": "sae_auroc", "auroc_neurons": "neuron_auroc"}),
                           out.auroc, title=f"{model}: best detector of each latent ({large}x dictionary vs neurons)")
    else:
        placeholder(out.auroc, "no latent variables recorded for this dataset")
    spec, auto = pd.read_csv(inp.specificity), pd.read_csv(inp.autointerp)
    if len(spec) and len(auto):
        fig.interpretability(spec, auto, large, out.interpretability,
                             title=f"{model}: features ({large}x) vs neurons, in the paper's measures")
    else:
        placeholder(out.interpretability, "no latent variables recorded for this dataset")
    fig.splitting_for_latent(read_json(inp.features).get("split_latent", {}), out.splitting_latent)
    probe_table = pd.read_csv(inp.probes)
    if len(probe_table):
        fig.probes(probe_table, out.probes, title=f"linear probes for the corpus's latents (best feature: {large}x)")
    else:
        placeholder(out.probes, "no probes: this dataset records no latent variables")
    if t["splitting_cos"].numel() > 1:
        fig.feature_splitting(t["splitting_cos"], out.splitting,
                              labels=(f"{int(table['expansion'].min())}x", f"{large}x"),
                              title=f"{model}: feature splitting")
    else:
        placeholder(out.splitting, "one dictionary size: nothing to split")
