"""Known-answer tests for simreal.analysis.metrics and stats: intervals, the reference threshold, ratios."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from simreal.analysis.metrics import (
    RatioResult,
    area_under_curve,
    describe_ratio,
    fraction_of_reference,
    jumpstart,
    mean_steps_to_threshold,
    reference_threshold,
    return_at_budget,
    sample_efficiency_ratio,
    steps_to_threshold,
    untrained_return,
)
from simreal.stats import Curve, bootstrap_ci, curve_band, probability_of_improvement, summary

GRID = np.arange(0, 6001, 1000)  # 0, 1000, ..., 6000


def linear_curve(reach_step: float, threshold: float = 100.0, start: float = 0.0) -> Curve:
    """A curve rising linearly from `start` at step 0 to `threshold` at `reach_step`, on GRID."""
    return GRID, start + (threshold - start) * GRID / reach_step


def ratio(finetune: list[Curve], scratch: list[Curve], n_resamples: int = 50) -> RatioResult:
    """The ratio at threshold 100 with a fixed seed."""
    rng = np.random.default_rng(0)
    return sample_efficiency_ratio(finetune, scratch, 100.0, n_resamples=n_resamples, rng=rng)


# --- summary ----------------------------------------------------------------------------------------


def test_summary_ci_is_the_seeded_percentile_bootstrap_of_the_mean() -> None:
    s = summary([1, 2, 3, 4, 5])
    assert (s.n, s.mean, s.median) == (5, 3.0, 3.0)
    assert s.std == pytest.approx(math.sqrt(2.5))
    assert s.ci == bootstrap_ci([1, 2, 3, 4, 5], "mean", rng=np.random.default_rng(0))
    assert 1.0 < s.ci_low < 3.0 < s.ci_high < 5.0
    assert summary([1, 2, 3, 4, 5]).ci == s.ci  # the same data always gives the same interval


def test_summary_single_value_has_degenerate_interval() -> None:
    s = summary([7.5])
    assert (s.n, s.mean, s.std, s.ci_low, s.ci_high, s.iqm) == (1, 7.5, 0.0, 7.5, 7.5, 7.5)


def test_iqm_is_mean_of_middle_half() -> None:
    # 8 values: drop the 2 lowest and 2 highest, mean of [3, 4, 5, 100] is 28.
    assert summary([1, 2, 3, 4, 5, 100, 1000, 2000]).iqm == pytest.approx((3 + 4 + 5 + 100) / 4)
    assert summary([1, 2, 3, 4, 5, 6, 7, 8]).iqm == pytest.approx(4.5)


# --- bootstrap ------------------------------------------------------------------------------------


def test_bootstrap_ci_covers_true_mean_with_analytic_width() -> None:
    x = np.random.default_rng(0).normal(10.0, 2.0, size=2000)
    low, high = bootstrap_ci(x, "mean", n_resamples=2000, rng=np.random.default_rng(1))
    assert low < 10.0 < high
    analytic = 2 * 1.96 * x.std(ddof=1) / math.sqrt(x.size)
    assert high - low == pytest.approx(analytic, rel=0.15)


@pytest.mark.parametrize("statistic", ["mean", "median", "iqm"])
def test_bootstrap_ci_same_seed_same_interval(statistic: str) -> None:
    x = np.random.default_rng(3).normal(size=30)
    first = bootstrap_ci(x, statistic, n_resamples=500, rng=np.random.default_rng(42))  # type: ignore[arg-type]
    again = bootstrap_ci(x, statistic, n_resamples=500, rng=np.random.default_rng(42))  # type: ignore[arg-type]
    other = bootstrap_ci(x, statistic, n_resamples=500, rng=np.random.default_rng(43))  # type: ignore[arg-type]
    assert first == again
    assert first != other
    assert first[0] <= first[1]


def test_bootstrap_ci_requires_a_generator() -> None:
    with pytest.raises(TypeError, match="Generator"):
        bootstrap_ci([1.0, 2.0], rng=0)  # type: ignore[arg-type]


def test_curve_band_brackets_center_per_step() -> None:
    rng = np.random.default_rng(5)
    curves = [(GRID, GRID / 100 + rng.normal(0, 5, GRID.size)) for _ in range(8)]
    band = curve_band(curves, "iqm", n_resamples=300, rng=np.random.default_rng(0))
    assert np.array_equal(band.steps, GRID)
    assert band.center.shape == band.low.shape == band.high.shape == (GRID.size,)
    assert np.all(band.low <= band.center + 1e-12) and np.all(band.center <= band.high + 1e-12)


# --- time to threshold ------------------------------------------------------------------------------


def test_steps_to_threshold_known_answers() -> None:
    steps = np.array([0, 1000, 2000, 3000])
    returns = np.array([0.0, 50.0, 100.0, 120.0])
    assert steps_to_threshold(steps, returns, 100.0) == 2000.0  # exact hit
    assert steps_to_threshold(steps, returns, 75.0) == 1500.0  # interpolated
    assert steps_to_threshold(steps, returns, 110.0) == 2500.0
    assert steps_to_threshold(steps, returns, 121.0) is None  # never
    assert steps_to_threshold(steps, returns, -5.0) == 0.0  # reached before training


def test_steps_to_threshold_handles_negative_returns_and_dips() -> None:
    steps = np.array([0, 1000, 2000, 3000])
    returns = np.array([-1200.0, -300.0, -800.0, -100.0])
    assert steps_to_threshold(steps, returns, -750.0) == 500.0  # first crossing, not the last
    assert steps_to_threshold(steps, returns, -200.0) == pytest.approx(2000 + 1000 * 600 / 700)


def test_mean_steps_to_threshold_uses_mean_curve() -> None:
    curves = [(GRID, np.full(GRID.size, 0.0)), (GRID, GRID / 30.0)]  # mean = GRID / 60
    assert mean_steps_to_threshold(curves, 50.0) == pytest.approx(3000.0)


# --- thresholds -------------------------------------------------------------------------------------


def test_reference_threshold_spans_untrained_to_reference() -> None:
    assert reference_threshold(-1100.0, -200.0, 0.9) == pytest.approx(-1100 + 0.9 * 900)
    assert reference_threshold(20.0, 1000.0, 0.5) == pytest.approx(510.0)
    assert fraction_of_reference(510.0, 20.0, 1000.0) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="does not improve on the untrained policy"):
        reference_threshold(5.0, 5.0)
    with pytest.raises(ValueError, match="fraction"):
        reference_threshold(0.0, 1.0, 1.5)


def test_untrained_return_is_the_mean_first_evaluation() -> None:
    curves = [(GRID, np.linspace(10, 900, GRID.size)), (GRID, np.linspace(20, 500, GRID.size))]
    assert untrained_return(curves) == pytest.approx(15.0)
    with pytest.raises(ValueError, match="not before training"):
        untrained_return([(GRID + 1, np.zeros(GRID.size))])


# --- sample-efficiency ratio ------------------------------------------------------------------------


def test_ratio_five_times_fewer_steps() -> None:
    result = ratio([linear_curve(1000)], [linear_curve(5000)])
    assert result.estimate == pytest.approx(5.0)
    assert result.kind == "exact" and not result.is_lower_bound and not result.finetune_floored
    assert (result.finetune_steps, result.scratch_steps) == (1000.0, 5000.0)


def test_ratio_ci_contains_estimate_across_noisy_seeds() -> None:
    ft = [linear_curve(r) for r in (1800, 2000, 2200, 1900)]
    sc = [linear_curve(r) for r in (4000, 5000, 6000, 4500)]
    result = ratio(ft, sc, n_resamples=1000)
    assert result.kind == "exact" and result.estimate is not None
    assert result.ci_low is not None and result.ci_high is not None
    assert result.ci_low <= result.estimate <= result.ci_high
    assert result.ci_low < result.ci_high
    assert result.defined_fraction == 1.0


def test_ratio_lower_bound_when_scratch_never_reaches() -> None:
    result = ratio([linear_curve(2000)], [linear_curve(60_000)])
    assert result.is_lower_bound and result.scratch_steps is None
    assert result.estimate == pytest.approx(6000 / 2000)  # scratch budget / fine-tune steps
    assert result.describe().startswith(">= 3.00x")


def test_ratio_floors_finetune_reaching_at_step_zero() -> None:
    result = ratio([linear_curve(1000, start=150.0)], [linear_curve(4000)])
    assert result.finetune_steps == 0.0 and result.finetune_floored
    assert result.kind == "lower_bound"  # fine-tune may have needed fewer steps than its first evaluation
    assert result.estimate == pytest.approx(4000 / 1000)  # floored at the first evaluation after 0


def test_ratio_in_words() -> None:
    lower = ratio([linear_curve(2000)], [(np.arange(0, 60_001, 1000), np.zeros(61))])
    assert describe_ratio(lower, 0.9).startswith(
        "fine-tune reaches 90% of the reference in 2,000 target steps; "
        "scratch does not within 60,000: ratio >= 30.00x"
    )
    exact = ratio([linear_curve(1000)], [linear_curve(5000)])
    assert "fine-tune reaches 90% of the reference in 1,000 target steps; scratch in 5,000: ratio 5.00x" in (
        describe_ratio(exact, 0.9)
    )
    never = ratio([linear_curve(60_000)], [linear_curve(60_000)])
    assert describe_ratio(never, 0.9).endswith(": no ratio")


def test_ratio_upper_bound_and_undefined() -> None:
    never = [linear_curve(60_000)]
    upper = ratio(never, [linear_curve(3000)])
    assert upper.kind == "upper_bound" and upper.estimate == pytest.approx(3000 / 6000)
    neither = ratio(never, never)
    assert neither.kind == "undefined" and neither.estimate is None and neither.ci_low is None


# --- jumpstart, budget, area, probability of improvement --------------------------------------------


def test_jumpstart_pairs_seeds_by_index() -> None:
    ft = [(GRID, np.full(GRID.size, v)) for v in (10.0, 12.0, 14.0)]
    sc = [(GRID, np.full(GRID.size, v)) for v in (1.0, 2.0, 3.0)]
    s = jumpstart(ft, sc)
    assert (s.n, s.mean) == (3, 10.0)
    assert s.std == pytest.approx(1.0)  # differences 9, 10, 11


def test_jumpstart_unequal_counts_compares_means() -> None:
    ft = [(GRID, np.full(GRID.size, v)) for v in (10.0, 12.0)]
    sc = [(GRID, np.full(GRID.size, v)) for v in (1.0, 2.0, 3.0)]
    s = jumpstart(ft, sc)
    assert s.mean == pytest.approx(11.0 - 2.0) and s.n == 2
    assert 10.0 - 3.0 <= s.ci_low <= 9.0 <= s.ci_high <= 12.0 - 1.0  # resampled group means stay in range


def test_return_at_budget_and_area_under_curve() -> None:
    curves = [(np.array([0, 1000, 3000]), np.array([0.0, 10.0, 10.0])) for _ in range(2)]
    assert return_at_budget(curves).mean == 10.0
    # area = 0.5*1000*10 + 2000*10 = 25000, over a range of 3000 steps.
    assert area_under_curve(curves).mean == pytest.approx(25000 / 3000)


def test_probability_of_improvement_known_answers() -> None:
    assert probability_of_improvement([5, 6, 7], [1, 2, 3]) == 1.0
    assert probability_of_improvement([1, 2, 3], [1, 2, 3]) == 0.5
    assert probability_of_improvement([1, 2, 3], [5, 6, 7]) == 0.0


@given(
    st.lists(st.integers(-5, 5), min_size=1, max_size=8),
    st.lists(st.integers(-5, 5), min_size=1, max_size=8),
)
def test_probability_of_improvement_matches_mann_whitney(a: list[int], b: list[int]) -> None:
    expected = stats.mannwhitneyu(a, b).statistic / (len(a) * len(b))
    assert probability_of_improvement(a, b) == pytest.approx(expected)
    assert probability_of_improvement(a, b) + probability_of_improvement(b, a) == pytest.approx(1.0)


# --- errors -----------------------------------------------------------------------------------------


def test_errors_on_bad_inputs() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="empty"):
        summary([])
    with pytest.raises(ValueError, match="NaN"):
        summary([1.0, float("nan")])
    with pytest.raises(ValueError, match="no curves"):
        return_at_budget([])
    with pytest.raises(ValueError, match="3 steps but 2 returns"):
        steps_to_threshold([0, 1, 2], [0.0, 1.0], 1.0)
    with pytest.raises(ValueError, match="strictly increasing"):
        steps_to_threshold([0, 2, 1], [0.0, 1.0, 2.0], 1.0)
    with pytest.raises(ValueError, match="strictly increasing"):
        steps_to_threshold([0, 1, 1], [0.0, 1.0, 2.0], 1.0)
    with pytest.raises(ValueError, match="share one grid"):
        return_at_budget([(GRID, np.zeros(GRID.size)), (GRID + 1, np.zeros(GRID.size))])
    with pytest.raises(ValueError, match="statistic"):
        bootstrap_ci([1.0, 2.0], "mode", rng=rng)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="confidence"):
        summary([1.0, 2.0], confidence=1.5)
    with pytest.raises(ValueError, match="first steps differ"):
        jumpstart([(GRID, np.zeros(GRID.size))], [(GRID + 1, np.zeros(GRID.size))])
    with pytest.raises(ValueError, match="after step 0"):
        sample_efficiency_ratio([([0], [1.0])], [([0], [1.0])], 0.5, rng=rng)
    with pytest.raises(ValueError, match="at least two"):
        area_under_curve([([0], [1.0])])


def test_clearly_above_pairs_episodes_and_needs_two_of_them() -> None:
    from simreal.stats import clearly_above

    start = [-7.0, -4.0, -6.0, -3.0, -5.0]
    assert clearly_above([x + 0.3 for x in start], start, 2.0)  # +0.3 on every episode: clear when paired
    assert not clearly_above([x + 0.3 for x in start], [-3.0, -4.0, -5.0, -6.0, -7.5], 2.0)  # other pairs
    assert not clearly_above([5.0], [1.0], 0.0)  # one pair: no error to measure
    assert not clearly_above(start, start, 0.0)  # no gain
