"""Faithfulness-curve arithmetic of the MIB circuit track (mechrepro.techniques.faithfulness)."""
import math

import numpy as np
import pytest

from mechrepro.techniques.faithfulness import (
    EDGE_FRACTIONS,
    Curve,
    bootstrap_indices,
    cmd,
    cpr,
    edge_counts,
    normalized_faithfulness,
    percentile_interval,
)

# A curve that rises, overshoots the full model at 50% of edges (f = 1.1) and comes back to 1 at 100%.
GOLDEN_F = (0.0, 0.1, 0.2, 0.3, 0.5, 0.6, 0.8, 0.9, 1.1, 1.0)


def test_golden_curve_by_hand_and_by_mibs_formula():
    # MIB, MIB_circuit_track/evaluation.py::evaluate_area_under_curve (hannamw/MIB-circuit-track):
    #   area_under  += (x2 - x1) * ((f1 + f2) / 2)
    #   area_from_1 += (x2 - x1) * ((|1 - f1| + |1 - f2|) / 2)
    # over consecutive points of x = (.001, .002, .005, .01, .02, .05, .1, .2, .5, 1), no point at 0.
    #
    # widths x2 - x1:   .001  .003  .005  .01  .03   .05   .1    .3   .5
    # CPR, (f1+f2)/2:   .05   .15   .25   .4   .55   .7    .85   1.0  1.05
    #      products:    .00005 .00045 .00125 .004 .0165 .035 .085 .3 .525        sum = 0.96725
    # CMD, |1-f|:       1 .9 .8 .7 .5 .4 .2 .1 .1 0
    #      means:       .95   .85   .75   .6   .45   .3    .15   .1   .05
    #      products:    .00095 .00255 .00375 .006 .0135 .015 .015 .03 .025      sum = 0.11175
    # The 0.2 -> 0.5 segment crosses f = 1 (0.9 -> 1.1): MIB averages the two distances (0.1, 0.1) and
    # counts 0.3 * 0.1 = 0.03, where the exact area under |1 - f| of the straight line would be 0.015.
    assert cpr(EDGE_FRACTIONS, GOLDEN_F) == pytest.approx(0.96725, abs=1e-12)
    assert cmd(EDGE_FRACTIONS, GOLDEN_F) == pytest.approx(0.11175, abs=1e-12)
    # MIB's loop is the composite trapezoid rule on the sampled values, |1 - f| included.
    f = np.array(GOLDEN_F)
    assert cpr(EDGE_FRACTIONS, GOLDEN_F) == pytest.approx(np.trapezoid(f, EDGE_FRACTIONS), abs=1e-12)
    assert cmd(EDGE_FRACTIONS, GOLDEN_F) == pytest.approx(np.trapezoid(np.abs(1 - f), EDGE_FRACTIONS), abs=1e-12)


def test_perfect_curve_has_cpr_0999_and_cmd_0():
    # MIB integrates from the first measured fraction, 0.001, not from 0, so f = 1 everywhere gives the
    # width of [0.001, 1]: 0.999, not 1.
    ones = [1.0] * len(EDGE_FRACTIONS)
    assert cpr(EDGE_FRACTIONS, ones) == pytest.approx(0.999, abs=1e-12)
    assert cmd(EDGE_FRACTIONS, ones) == 0.0
    # log_scale (MIB's option, default off) integrates over ln x without rescaling: ln 1 - ln 0.001.
    assert cpr(EDGE_FRACTIONS, ones, log_scale=True) == pytest.approx(-math.log(0.001), abs=1e-12)


def test_step_curve():
    # f = 0 below 10% of edges, 1 from 10% on. CPR: only the 0.05 -> 0.1 ramp (0.05 * 0.5 = 0.025) and
    # the flat top from 0.1 to 1 (0.9) count: 0.925. CMD: |1 - f| = 1 from 0.001 to 0.05 (0.049) plus the
    # ramp (0.025): 0.074.
    step = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    assert cpr(EDGE_FRACTIONS, step) == pytest.approx(0.925, abs=1e-12)
    assert cmd(EDGE_FRACTIONS, step) == pytest.approx(0.074, abs=1e-12)


def test_cpr_plus_cmd_is_the_span_when_f_stays_in_0_1():
    # f + |1 - f| = 1 for 0 <= f <= 1, so the two areas add up to the x span; not so once f overshoots.
    rng = np.random.default_rng(0)
    f = rng.uniform(0, 1, len(EDGE_FRACTIONS))
    assert cpr(EDGE_FRACTIONS, f) + cmd(EDGE_FRACTIONS, f) == pytest.approx(0.999, abs=1e-12)
    assert cpr(EDGE_FRACTIONS, GOLDEN_F) + cmd(EDGE_FRACTIONS, GOLDEN_F) > 0.999 + 0.07


def test_no_clipping_of_f():
    above = [2.0] * len(EDGE_FRACTIONS)
    below = [-1.0] * len(EDGE_FRACTIONS)
    assert cpr(EDGE_FRACTIONS, above) == pytest.approx(2 * 0.999)
    assert cmd(EDGE_FRACTIONS, above) == pytest.approx(0.999)
    assert cpr(EDGE_FRACTIONS, below) == pytest.approx(-0.999)
    assert cmd(EDGE_FRACTIONS, below) == pytest.approx(2 * 0.999)


def test_normalized_faithfulness():
    assert normalized_faithfulness(3.0, 1.0, 5.0) == pytest.approx(0.5)
    assert isinstance(normalized_faithfulness(3.0, 1.0, 5.0), float)
    assert normalized_faithfulness(1.0, 1.0, 5.0) == 0.0
    assert normalized_faithfulness(5.0, 1.0, 5.0) == 1.0
    # Elementwise on arrays, broadcasting the scalars; below 0 and above 1 are kept.
    out = normalized_faithfulness(np.array([-1.0, 1.0, 3.0, 7.0]), 1.0, 5.0)
    np.testing.assert_allclose(out, [-0.5, 0.0, 0.5, 1.5])
    # A metric where the full model scores below the empty circuit still normalises to 0 and 1.
    assert normalized_faithfulness(-2.0, 0.0, -4.0) == pytest.approx(0.5)


def test_normalized_faithfulness_refuses_undefined_and_non_finite():
    with pytest.raises(ValueError, match="undefined"):
        normalized_faithfulness(2.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="undefined"):
        normalized_faithfulness(np.array([2.0, 3.0]), np.array([1.0, 1.0]), np.array([4.0, 1.0]))
    with pytest.raises(ValueError, match="m_circuit must be finite; got nan"):
        normalized_faithfulness(float("nan"), 0.0, 1.0)
    with pytest.raises(ValueError, match=r"m_full must be finite; got inf at index \(1,\)"):
        normalized_faithfulness(0.5, 0.0, np.array([1.0, np.inf]))


@pytest.mark.parametrize(("fractions", "match"), [
    ((0.0, 0.5, 1.0), "edge fraction 0.0 at index 0 is not in"),
    ((0.1, 0.5, 1.5), "edge fraction 1.5 at index 2 is not in"),
    ((0.1, float("nan"), 1.0), "edge fraction nan at index 1"),
    ((0.1, 0.5, 0.5), "increase strictly; 0.5 at index 2 follows 0.5"),
    ((0.5, 0.1, 1.0), "increase strictly; 0.1 at index 1 follows 0.5"),
])
def test_bad_fractions_raise(fractions, match):
    with pytest.raises(ValueError, match=match):
        cpr(fractions, [0.5] * len(fractions))


def test_bad_curves_raise():
    with pytest.raises(ValueError, match="differ in length: 10 vs 9"):
        cmd(EDGE_FRACTIONS, [0.5] * 9)
    with pytest.raises(ValueError, match="at least 2 points"):
        cpr([1.0], [1.0])
    with pytest.raises(ValueError, match="faithfulness nan at index 3"):
        cpr(EDGE_FRACTIONS, [0.5, 0.5, 0.5, float("nan"), 0.5, 0.5, 0.5, 0.5, 0.5, 0.5])


def test_edge_counts_truncate_like_mib():
    # GPT-2 small has 32,491 edges in MIB's graph (EDGE_COUNTS in MIB's evaluation code).
    assert edge_counts(32491) == (32, 64, 162, 324, 649, 1624, 3249, 6498, 16245, 32491)
    assert edge_counts(10, (0.05, 0.5, 1.0)) == (0, 5, 10)
    with pytest.raises(ValueError, match="positive"):
        edge_counts(0)


def test_bootstrap_is_deterministic_per_seed():
    a = bootstrap_indices(50, 20, seed=7)
    b = bootstrap_indices(50, 20, seed=7)
    c = bootstrap_indices(50, 20, seed=8)
    assert len(a) == 20
    assert all(x.shape == (50,) and x.min() >= 0 and x.max() < 50 for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    # With replacement: a resample of 50 almost surely repeats some index.
    assert any(len(np.unique(x)) < 50 for x in a)
    with pytest.raises(ValueError, match="n_items"):
        bootstrap_indices(0, 10, seed=0)


def test_percentile_interval():
    lo, hi = percentile_interval(np.arange(100.0), level=0.9)
    # numpy's linear interpolation: the 5% and 95% quantiles of 0..99 are 4.95 and 94.05.
    assert (lo, hi) == pytest.approx((4.95, 94.05))
    with pytest.raises(ValueError, match="at least 10 resamples; got 9"):
        percentile_interval(np.arange(9.0))
    with pytest.raises(ValueError, match="level"):
        percentile_interval(np.arange(10.0), level=1.0)
    with pytest.raises(ValueError, match="values must be finite"):
        percentile_interval([*range(10), float("nan")])


def test_bootstrap_ci_on_cpr_over_prompts():
    # The recipe of the module docstring: resample prompts, normalise the resampled means, take the area.
    rng = np.random.default_rng(1)
    n_prompts = 40
    m_empty = rng.normal(0.0, 0.5, n_prompts)
    m_full = rng.normal(3.0, 0.5, n_prompts)
    m_circuit = np.stack([m_empty + (m_full - m_empty) * k ** 0.3 + rng.normal(0, 0.3, n_prompts)
                          for k in EDGE_FRACTIONS])  # [fraction prompt]

    def area(idx):
        f = normalized_faithfulness(m_circuit[:, idx].mean(1), m_empty[idx].mean(), m_full[idx].mean())
        return cpr(EDGE_FRACTIONS, f)

    point = area(np.arange(n_prompts))
    areas = [area(idx) for idx in bootstrap_indices(n_prompts, 200, seed=0)]
    lo, hi = percentile_interval(areas)
    assert lo < point < hi
    assert (lo, hi) == percentile_interval([area(i) for i in bootstrap_indices(n_prompts, 200, seed=0)])


def test_curve_result():
    curve = Curve("eap-ig", EDGE_FRACTIONS, edge_counts(32491), GOLDEN_F)
    assert curve.cpr == pytest.approx(0.96725, abs=1e-12)
    assert curve.cmd == pytest.approx(0.11175, abs=1e-12)
    assert curve.edges_needed(0.5) == 649       # f first reaches 0.5 at 2% of edges
    assert curve.edges_needed(0.0) == 32        # the smallest circuit already scores 0
    assert curve.edges_needed(1.05) == 16245    # the overshoot at 50%
    assert curve.edges_needed(1.2) is None      # never reached
    assert hash(curve) == hash(Curve("eap-ig", list(EDGE_FRACTIONS), list(edge_counts(32491)), list(GOLDEN_F)))
    with pytest.raises(ValueError, match="n_edges has 9 entries for 10 fractions"):
        Curve("x", EDGE_FRACTIONS, edge_counts(32491)[:9], GOLDEN_F)
    with pytest.raises(ValueError, match="must not decrease"):
        Curve("x", (0.5, 1.0), (10, 5), (0.5, 1.0))
    with pytest.raises(ValueError, match="edge fraction 2.0"):
        Curve("x", (0.5, 2.0), (5, 10), (0.5, 1.0))
