"""Circuit faithfulness curves and their areas, scored as the MIB circuit-localization track scores them.

Mueller et al. 2025, *MIB: A Mechanistic Interpretability Benchmark*, circuit localization track. A method
ranks the model's edges; for each fraction k of edges in :data:`EDGE_FRACTIONS` the top-k circuit C_k is
kept and every other edge is patched from the counterfactual prompt. With m the task metric (the logit
difference, averaged over prompts), the normalised faithfulness is

    f(C) = (m(C) - m(∅)) / (m(full) - m(∅))

so the empty circuit scores 0 and the whole model 1. Two areas summarise the curve k -> f(C_k):

* CPR, circuit performance ratio (higher is better): the area under f;
* CMD, circuit-model distance (lower is better): the area under |1 - f|.

The arithmetic is ported from the benchmark's own code, ``evaluate_area_under_curve`` in
``MIB_circuit_track/evaluation.py`` of github.com/hannamw/MIB-circuit-track (commit b759df3; the
aaronmueller/MIB repository pins it as a submodule, and yanivnik/MIB-shared-task carries the same file).
What that code does, and so what this module does:

* the x axis is the edge *fraction* itself (not the edge count, not its log, unless ``log_scale``; MIB's
  default is ``log_scale=False``), and only the ten measured points are used: no point is added at
  fraction 0, so the areas run over [0.001, 1] and a perfect curve (f = 1 everywhere) has CPR 0.999;
* each segment is a trapezoid of the sampled values: (x2 - x1) * (y1 + y2) / 2, with y = f for CPR and
  y = |1 - f| for CMD. The absolute value is taken at the points, before interpolating, so a segment in
  which f crosses 1 counts the full trapezoid of the two distances (MIB does not split it at the crossing);
* f is never clipped: f > 1 raises CPR above the 0.999 of a perfect curve (and adds to CMD), f < 0 lowers it;
* with ``log_scale=True`` the x values are natural logs and the area is not rescaled, so a perfect curve
  then scores ln(1) - ln(0.001) ≈ 6.91.

MIB's ``absolute`` flag is not part of this arithmetic: it decides whether edges are ranked by |score| or
by signed score when the top-k circuit is chosen (its ``print_results.py`` reports CPR from the signed
ranking and CMD from the absolute one when both exist). Its ``no_normalize`` flag uses m(C) itself as the
curve; pass raw metric values to :func:`cpr` for that. The number of edges at fraction k is
``int(k * n_edges)`` (:func:`edge_counts`), truncated as MIB truncates it.

For a confidence interval over prompts, resample prompt indices with :func:`bootstrap_indices`, average
each of m(C_k), m(∅) and m(full) over the resampled prompts, normalise *the means* (as MIB does: it
normalises ``.mean()`` of each score, not per prompt), take the area, and read the interval off the
resampled areas with :func:`percentile_interval`.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# MIB's ``percentages`` in evaluate_area_under_curve: roughly logarithmic, so the few-edge regime, where
# methods differ most, gets most of the points.
EDGE_FRACTIONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def _require_finite(name: str, values: np.ndarray) -> None:
    if np.all(np.isfinite(values)):
        return
    if values.ndim == 0:
        raise ValueError(f"{name} must be finite; got {values.item()}")
    where = tuple(int(i) for i in np.argwhere(~np.isfinite(values))[0])
    raise ValueError(f"{name} must be finite; got {values[where]} at index {where}")


def normalized_faithfulness(m_circuit, m_empty, m_full):
    """f = (m(C) - m(∅)) / (m(full) - m(∅)); elementwise (with broadcasting) on arrays.

    Returns a float when every input is a scalar, else a numpy array. Raises ValueError when any input
    is NaN or infinite, or when m(full) == m(∅): the normalisation is then undefined (the task metric
    does not tell the whole model from the empty circuit, so there is nothing to recover).
    """
    arrays = {name: np.asarray(v, dtype=float) for name, v in
              (("m_circuit", m_circuit), ("m_empty", m_empty), ("m_full", m_full))}
    for name, arr in arrays.items():
        _require_finite(name, arr)
    span = arrays["m_full"] - arrays["m_empty"]
    if np.any(span == 0):
        raise ValueError("faithfulness is undefined when m(full) == m(empty): the metric does not separate "
                         "the whole model from the empty circuit")
    f = (arrays["m_circuit"] - arrays["m_empty"]) / span
    return float(f) if f.ndim == 0 else f


def _check_curve(fractions: Sequence[float], f: Sequence[float]) -> tuple[list[float], list[float]]:
    """Validated copies of a curve's x (edge fractions) and y (faithfulness) as Python floats."""
    xs = [float(x) for x in fractions]
    ys = [float(y) for y in f]
    if len(xs) != len(ys):
        raise ValueError(f"fractions and faithfulness differ in length: {len(xs)} vs {len(ys)}")
    if len(xs) < 2:
        raise ValueError(f"a curve needs at least 2 points to have an area; got {len(xs)}")
    for i, x in enumerate(xs):
        if not (math.isfinite(x) and 0.0 < x <= 1.0):
            raise ValueError(f"edge fraction {x} at index {i} is not in (0, 1]")
        if i and x <= xs[i - 1]:
            raise ValueError(f"edge fractions must increase strictly; {x} at index {i} follows {xs[i - 1]}")
    for i, y in enumerate(ys):
        if not math.isfinite(y):
            raise ValueError(f"faithfulness {y} at index {i} is not finite")
    return xs, ys


def _trapezoid(xs: list[float], ys: list[float], log_scale: bool) -> float:
    # The same operations in the same order as MIB's loop, so the floats agree to the last bit.
    if log_scale:
        xs = [math.log(x) for x in xs]
    area = 0.0
    for x1, x2, y1, y2 in zip(xs[:-1], xs[1:], ys[:-1], ys[1:], strict=True):
        area += (x2 - x1) * ((y1 + y2) / 2)
    return area


def cpr(fractions: Sequence[float], f: Sequence[float], log_scale: bool = False) -> float:
    """Circuit performance ratio: trapezoidal area under f over the given edge fractions (MIB's
    ``area_under``). No point at 0 is added and f is not clipped; see the module docstring."""
    xs, ys = _check_curve(fractions, f)
    return _trapezoid(xs, ys, log_scale)


def cmd(fractions: Sequence[float], f: Sequence[float], log_scale: bool = False) -> float:
    """Circuit-model distance: trapezoidal area under |1 - f|, the absolute value taken at each point
    before the trapezoid (MIB's ``area_from_1``)."""
    xs, ys = _check_curve(fractions, f)
    return _trapezoid(xs, [abs(1.0 - y) for y in ys], log_scale)


def edge_counts(n_total: int, fractions: Sequence[float] = EDGE_FRACTIONS) -> tuple[int, ...]:
    """Edges kept at each fraction: ``int(fraction * n_total)``, truncated as MIB truncates it (GPT-2
    small's 32,491 edges give 32 at 0.1%)."""
    n_total = operator.index(n_total)
    if n_total < 1:
        raise ValueError(f"n_total must be a positive number of edges; got {n_total}")
    xs, _ = _check_curve(fractions, [0.0] * len(fractions))
    return tuple(int(x * n_total) for x in xs)


def bootstrap_indices(n_items: int, n_resamples: int, seed: int) -> list[np.ndarray]:
    """``n_resamples`` resamples of ``range(n_items)``, each of size ``n_items``, drawn with replacement
    from one seeded numpy Generator, so the same seed gives the same resamples."""
    n_items, n_resamples = operator.index(n_items), operator.index(n_resamples)
    if n_items < 1:
        raise ValueError(f"n_items must be at least 1; got {n_items}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1; got {n_resamples}")
    rng = np.random.default_rng(seed)
    return [rng.integers(0, n_items, size=n_items) for _ in range(n_resamples)]


def percentile_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Central percentile interval of bootstrap statistics: the (1 - level)/2 and (1 + level)/2
    quantiles, numpy's default linear interpolation. Fewer than 10 values is refused: the tails of so
    few resamples are just their extremes."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"values must be one-dimensional; got shape {arr.shape}")
    if arr.size < 10:
        raise ValueError(f"a percentile interval needs at least 10 resamples; got {arr.size}")
    _require_finite("values", arr)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1); got {level}")
    lo, hi = np.quantile(arr, [(1.0 - level) / 2, (1.0 + level) / 2])
    return float(lo), float(hi)


@dataclass(frozen=True)
class Curve:
    """One method's faithfulness curve: f at each edge fraction, with the edge count it kept there."""

    method: str
    fractions: tuple[float, ...]
    n_edges: tuple[int, ...]
    faithfulness: tuple[float, ...]

    def __post_init__(self):
        xs, ys = _check_curve(self.fractions, self.faithfulness)
        counts = tuple(operator.index(n) for n in self.n_edges)
        if len(counts) != len(xs):
            raise ValueError(f"n_edges has {len(counts)} entries for {len(xs)} fractions")
        for i, n in enumerate(counts):
            if n < 0:
                raise ValueError(f"n_edges {n} at index {i} is negative")
            # Larger fractions keep at least as many edges; a decrease means the columns are misaligned.
            if i and n < counts[i - 1]:
                raise ValueError(f"n_edges must not decrease; {n} at index {i} follows {counts[i - 1]}")
        # Stored as tuples of plain numbers so the frozen curve is hashable and JSON-friendly.
        object.__setattr__(self, "fractions", tuple(xs))
        object.__setattr__(self, "faithfulness", tuple(ys))
        object.__setattr__(self, "n_edges", counts)

    @property
    def cpr(self) -> float:
        return cpr(self.fractions, self.faithfulness)

    @property
    def cmd(self) -> float:
        return cmd(self.fractions, self.faithfulness)

    def edges_needed(self, threshold: float) -> int | None:
        """Smallest edge count whose faithfulness reaches ``threshold``; None if no point does."""
        if not math.isfinite(threshold):
            raise ValueError(f"threshold must be finite; got {threshold}")
        reached = [n for n, y in zip(self.n_edges, self.faithfulness, strict=True) if y >= threshold]
        return min(reached) if reached else None
