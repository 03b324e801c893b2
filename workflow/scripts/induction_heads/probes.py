"""Repeated-token probes [BOS, r, r] and reference batches (rule `induction_heads_probes`)."""

from mechrepro.io import log_to, save_tensors
from mechrepro.models.load import load_tokenizer_for
from mechrepro.tasks.induction_heads import InductionConfig, make_probes, probe_token_pool

snakemake = snakemake  # noqa: F821 (injected by Snakemake)

with log_to(snakemake.log[0]):
    cfg = InductionConfig.from_config(snakemake.params.section)
    tok = load_tokenizer_for(cfg.main_model, snakemake.params.models_dir)
    pool = probe_token_pool(tok)
    common = dict(pool=pool, bos_id=tok.bos_token_id, lengths=cfg.probe_lengths)
    probes = make_probes(**common, n=cfg.n_probes, seed=cfg.seed)
    # Reference batches (other random tokens) give the means for mean-ablation.
    reference = make_probes(**common, n=cfg.n_reference, seed=cfg.seed + 1)
    save_tensors(snakemake.output.probes, {**{f"probe.{k}": v for k, v in probes.items()},
                                           **{f"reference.{k}": v for k, v in reference.items()}})
    print(f"probes: lengths {cfg.probe_lengths}, {cfg.n_probes} each, from {len(pool)} word tokens")
