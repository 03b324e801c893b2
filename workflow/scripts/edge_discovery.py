"""Edge-level circuit discovery on one replication's task (rule `edge_discovery`)."""

from mechrepro.io import log_to, set_threads
from mechrepro.models.load import best_device, is_random_weights, load_model
from mechrepro.tasks.edge_discovery import run

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
out, params = snakemake.output, snakemake.params

with log_to(snakemake.log[0]):
    set_threads(snakemake.threads)
    section = dict(params.section)
    device = best_device()
    model = load_model(section["model"], models_dir=params.models_dir, device=device)
    found = run(model, params.task, section, dict(params.discovery))
    found.summary.update({"model": section["model"], "random_weights": is_random_weights(section["model"]),
                          "device": device, "n_layers": model.cfg.n_layers, "n_heads": model.cfg.n_heads})
    found.save(out.edges, out.curves, out.bootstrap, out.summary)
