"""Model cards: one row per model from its ``model.json`` (toy models) and ``capabilities.json``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mechrepro.io import read_json
from mechrepro.models.registry import get_spec

CAPABILITY_COLUMNS = ("ioi_accuracy", "ioi_top1", "ioi_logit_diff", "ioi_accuracy_train_templates", "gt_prob_diff",
                      "gt_year_mass", "heldout_loss")


def card_rows(names: list[str], models_dir: str | Path) -> pd.DataFrame:
    """Architecture, training and capability numbers of ``names`` (models_dir: results/<scale>/models)."""
    rows = []
    for name in names:
        spec, mdir = get_spec(name), Path(models_dir) / name
        caps = read_json(mdir / "capabilities.json")
        row = {"model": name, "kind": spec.kind + (" (random weights)" if caps.get("random_weights") else "")}
        if spec.kind == "toy":
            card = read_json(mdir / "model.json")
            row.update(layers=spec.n_layers, d_model=spec.d_model, heads=spec.n_heads, d_mlp=spec.d_mlp or 0,
                       params=card["n_params"], corpus=spec.corpus, tokens_seen=card["tokens_seen"],
                       final_train_loss=card["final_loss"])
        row.update({c: caps["metrics"].get(c) for c in CAPABILITY_COLUMNS})
        checks = caps["checks"]
        row["checks"] = ", ".join(f"{c['metric']} {c['status']}" for c in checks) if checks else "none required"
        rows.append(row)
    return pd.DataFrame(rows)


def checks_summary(names: list[str], models_dir: str | Path) -> dict[str, int]:
    """Counts of required capability checks by status, over ``names``."""
    out = {"pass": 0, "fail": 0}
    for name in names:
        for c in read_json(Path(models_dir) / name / "capabilities.json")["checks"]:
            out[c["status"]] = out.get(c["status"], 0) + 1
    return out
