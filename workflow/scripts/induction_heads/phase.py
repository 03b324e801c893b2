"""Scores at every kept checkpoint of one model: the phase change (rule `induction_heads_phase`); its summary
numbers (summary.json) are a metrics source of the replication."""

from mechrepro.io import load_tensors, log_to, read_json, set_threads, write_csv, write_json
from mechrepro.models.load import load_model
from mechrepro.tasks.induction_heads import InductionConfig, checkpoint_sweep, phase_change_summary

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
inp, out, params = snakemake.input, snakemake.output, snakemake.params

with log_to(snakemake.log[0]):
    set_threads(snakemake.threads)
    cfg = InductionConfig.from_config(params.section)
    tensors = load_tensors(inp.probes)
    probes = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("probe.")}
    icl_tokens = load_tensors(inp.heldout[0])["tokens"][: cfg.n_icl_docs]
    checkpoints = read_json(inp.checkpoints)

    def load(path):
        return load_model(params.model, models_dir=params.models_dir, checkpoint=path)

    heads, summary = checkpoint_sweep(load, checkpoints, probes, icl_tokens, cfg, desc=params.model)
    write_csv(out.heads, heads)
    write_csv(out.summary, summary)
    write_json(out.metrics, phase_change_summary(summary))
    print(summary.to_string())
