"""Claims: a paper's statements as data, checked against our metrics.

``replications/<slug>/claims.yaml`` lists claims with the paper's source, the metric key they
read from ``results/<scale>/<slug>/metrics.json``, a comparator, a threshold value, a tolerance,
and the scales at which they are checked. Every threshold names its source. Each claim gets one of:

* ``pass`` / ``fail`` -- the comparison was made;
* ``not run`` -- the claim is not checked at this scale, or its metric was not computed here;
* ``not comparable`` -- a paper-model claim evaluated on random weights (the smoke run's fabricated hub cache,
  known from its marker, or a random-init stand-in): the numbers exist but say nothing about the paper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml

COMPARATORS = {
    ">": lambda a, b, tol: a > b - tol,
    ">=": lambda a, b, tol: a >= b - tol,
    "<": lambda a, b, tol: a < b + tol,
    "<=": lambda a, b, tol: a <= b + tol,
    "==": lambda a, b, tol: abs(a - b) <= tol,
}
STATUSES = ("pass", "fail", "not run", "not comparable")
REQUIRED = ("id", "claim", "source", "metric", "comparator", "value", "scales", "threshold_source")


@dataclass(frozen=True)
class Claim:
    id: str
    claim: str
    source: str
    metric: str
    comparator: str
    value: float
    scales: tuple[str, ...]
    threshold_source: str
    tolerance: float = 0.0
    paper_value: str = ""
    paper_model: bool = False  # true: only meaningful with the paper's trained weights
    note: str = ""

    def __post_init__(self):
        if self.comparator not in COMPARATORS:
            raise ValueError(f"claim {self.id!r}: comparator {self.comparator!r} is not one of {list(COMPARATORS)}")
        if self.tolerance < 0:
            raise ValueError(f"claim {self.id!r}: tolerance must be >= 0")


def load_claims(path: str | Path) -> list[Claim]:
    raw = yaml.safe_load(Path(path).read_text())
    claims, seen = [], set()
    for i, entry in enumerate(raw.get("claims", [])):
        missing = [k for k in REQUIRED if k not in entry]
        if missing:
            raise ValueError(f"{path}: claim #{i} lacks {', '.join(missing)}")
        if entry["id"] in seen:
            raise ValueError(f"{path}: duplicate claim id {entry['id']!r}")
        seen.add(entry["id"])
        entry = dict(entry)
        entry["scales"] = tuple(entry["scales"])
        entry["value"] = float(entry["value"])
        entry["tolerance"] = float(entry.get("tolerance", 0.0))
        claims.append(Claim(**entry))
    return claims


def evaluate(claims: list[Claim], metrics: dict, scale: str, random_weights: bool = False) -> list[dict]:
    """Check each claim against flat ``metrics``; returns one row per claim for claims.json."""
    rows = []
    for c in claims:
        ours = metrics.get(c.metric)
        row = {"id": c.id, "claim": c.claim, "source": c.source, "metric": c.metric,
               "comparator": c.comparator, "value": c.value, "tolerance": c.tolerance,
               "paper_value": c.paper_value, "threshold_source": c.threshold_source,
               "ours": None if ours is None else float(ours), "status": "", "why": ""}
        if scale not in c.scales:
            row["status"], row["why"] = "not run", f"checked only at scale(s) {', '.join(c.scales)}"
        elif ours is None:
            row["status"], row["why"] = "not run", f"metric {c.metric!r} was not computed at this scale"
        elif isinstance(ours, float) and math.isnan(ours):
            row["status"], row["why"], row["ours"] = "fail", "metric is NaN", None
        elif c.paper_model and random_weights:
            row["status"], row["why"] = "not comparable", "random weights (read from a fabricated hub cache, or a random-init stand-in): the number says nothing about the paper"
        else:
            ok = COMPARATORS[c.comparator](float(ours), c.value, c.tolerance)
            row["status"] = "pass" if ok else "fail"
            row["why"] = f"{float(ours):.4g} {c.comparator} {c.value:g}" + (f" ± {c.tolerance:g}" if c.tolerance else "")
        if c.note:
            row["why"] = f"{row['why']}; {c.note}" if row["why"] else c.note
        rows.append(row)
    return rows


def summarize(rows: list[dict]) -> dict[str, int]:
    return {s: sum(r["status"] == s for r in rows) for s in STATUSES}
