"""Transfer metrics over evaluation curves: the numbers the report of a transfer experiment prints.

A *curve* is one seed's evaluation record on the target environment, ``(steps, returns)``: target-env step
counts, non-negative and strictly increasing (step 0 = before any target training), and the evaluation
return at each. A *variant* (scratch, fine-tune, ...) is a list of curves, one per seed.

Grid convention: every function that takes the curves of one variant requires all its seeds to share one
step grid and raises ``ValueError`` otherwise. Nothing is interpolated onto a union grid: that would
invent evaluations, and extrapolating past a seed's last evaluation is guesswork. Variants may differ.

The metrics are Taylor & Stone's (jumpstart, asymptotic performance, total reward, time to threshold).
The threshold is set by a *reference* - an absolute return the user calls success, or scratch trained on
the target for much longer than the fine-tuning budget - never by an unconverged run:
``threshold = untrained + fraction * (reference - untrained)``. Intervals are `stats`' bootstrap.

Example:
    >>> steps = np.array([0, 1000, 2000])
    >>> steps_to_threshold(steps, np.array([0.0, 10.0, 20.0]), 15.0)
    1500.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt
from scipy import integrate

from simreal.stats import (
    _STATISTICS,
    Curve,
    FloatArray,
    Summary,
    _check_bootstrap,
    _check_confidence,
    _percentile_interval,
    _resample_rows,
    as_curve,
    as_variant,
    seeded,
    summary,
)

RatioKind: TypeAlias = Literal["exact", "lower_bound", "upper_bound", "undefined"]


@dataclass(frozen=True)
class RatioResult:
    """Sample-efficiency ratio: scratch steps-to-threshold over fine-tune steps-to-threshold.

    ``kind`` says how to read ``estimate``: ``exact``; ``lower_bound`` (scratch never reached the
    threshold, the ratio is at least scratch's budget over fine-tune's steps - or fine-tune was already
    there at step 0, and its first evaluation after step 0 is the most it can be charged);
    ``upper_bound`` (fine-tune never reached it, the ratio is at most scratch's steps over fine-tune's
    budget); ``undefined`` (neither reached it; estimate and CI are None).
    ``finetune_steps``/``scratch_steps`` are the raw crossings of the mean curves (None if never
    reached); ``finetune_floored`` says the fine-tune crossing lay below its first evaluation after step
    0 and was raised to it. ``defined_fraction`` is the share of bootstrap resamples in which a ratio
    existed; the CI is computed over those.
    """

    estimate: float | None
    kind: RatioKind
    ci_low: float | None
    ci_high: float | None
    finetune_steps: float | None
    scratch_steps: float | None
    finetune_floored: bool
    defined_fraction: float
    confidence: float = 0.95
    finetune_budget: float = 0.0
    scratch_budget: float = 0.0
    finetune_floor: float = 0.0

    def floor_note(self) -> str:
        """How the floored fine-tune crossing is counted (its first evaluation after step 0)."""
        return f", counted as its first evaluation after step 0 ({self.finetune_floor:,.0f} steps)"

    @property
    def is_lower_bound(self) -> bool:
        """True when scratch never reached the threshold, so the true ratio is at least ``estimate``."""
        return self.kind == "lower_bound"

    def describe(self) -> str:
        """One line for a report, e.g. ``5.00x [3.10, 7.40]`` or ``>= 4.00x [...]``."""
        if self.estimate is None:
            return "n/a (neither variant reached the threshold)"
        prefix = {"exact": "", "lower_bound": ">= ", "upper_bound": "<= "}.get(self.kind, "")
        ci = "" if self.ci_low is None else f" [{self.ci_low:.2f}, {self.ci_high:.2f}]"
        return f"{prefix}{self.estimate:.2f}x{ci}"


def jumpstart(
    finetune_curves: Sequence[Curve],
    scratch_curves: Sequence[Curve],
    confidence: float = 0.95,
    rng: np.random.Generator | None = None,
) -> Summary:
    """Initial gain: fine-tune's first-evaluation return minus scratch's (both must start at one step).

    Equal seed counts: seeds are paired by index and the result summarizes the per-seed differences.
    Different counts: nothing to pair, so the statistics are differences of the two groups' statistics,
    ``std`` is ``sqrt(var_ft + var_scratch)``, ``n`` the smaller seed count, and the CI bootstraps each
    group's seeds independently.
    """
    ft_steps, ft = as_variant(finetune_curves, "finetune_curves")
    sc_steps, sc = as_variant(scratch_curves, "scratch_curves")
    if ft_steps[0] != sc_steps[0]:
        raise ValueError(f"jumpstart: first steps differ (fine-tune {ft_steps[0]}, scratch {sc_steps[0]})")
    a, b = ft[:, 0], sc[:, 0]
    if a.size == b.size:
        return summary(a - b, confidence, rng)
    _check_confidence(confidence)
    gen = seeded(rng)
    fa, fb = summary(a, confidence, gen), summary(b, confidence, gen)
    mean_fn = _STATISTICS["mean"]
    boot = (
        _resample_rows(a[:, None], mean_fn, 10_000, gen)[:, 0]
        - _resample_rows(b[:, None], mean_fn, 10_000, gen)[:, 0]
    )
    low, high = _percentile_interval(boot[:, None], confidence)
    std = float(np.sqrt(fa.std**2 + fb.std**2))
    n = min(a.size, b.size)
    return Summary(
        n,
        fa.mean - fb.mean,
        std,
        float(low[0]),
        float(high[0]),
        fa.median - fb.median,
        fa.iqm - fb.iqm,
        confidence,
    )


def return_at_budget(curves: Sequence[Curve], confidence: float = 0.95) -> Summary:
    """Asymptotic performance: summary of each seed's last evaluation return."""
    _, returns = as_variant(curves, "curves")
    return summary(returns[:, -1], confidence)


def area_under_curve(curves: Sequence[Curve], confidence: float = 0.95) -> Summary:
    """Total reward: per seed, the trapezoid area under the curve divided by the step range.

    The normalization makes it the time-averaged return, in return units and comparable across budgets.
    Needs at least two evaluations.
    """
    steps, returns = as_variant(curves, "curves")
    if steps.size < 2:
        raise ValueError("area_under_curve: needs at least two evaluations per curve")
    areas = integrate.trapezoid(returns, steps, axis=1) / (steps[-1] - steps[0])
    return summary(areas, confidence)


def _crossings(steps: FloatArray, returns: FloatArray, threshold: float) -> FloatArray:
    """First step where each row of `returns` reaches `threshold`, linearly interpolated; NaN if never."""
    hit = returns >= threshold
    i = hit.argmax(axis=1)
    prev = np.maximum(i - 1, 0)
    rows = np.arange(returns.shape[0])
    r0, r1 = returns[rows, prev], returns[rows, i]
    s0, s1 = steps[prev], steps[i]
    with np.errstate(divide="ignore", invalid="ignore"):
        interpolated = s0 + (threshold - r0) / (r1 - r0) * (s1 - s0)
    at_point = (i == 0) | (r1 == threshold)
    return np.where(hit.any(axis=1), np.where(at_point, s1, interpolated), np.nan)


def _optional(x: float) -> float | None:
    """NaN (never reached / undefined) becomes None."""
    return None if np.isnan(x) else float(x)


def _check_threshold(threshold: float) -> None:
    if not np.isfinite(threshold):
        raise ValueError(f"threshold: must be finite, got {threshold}")


def steps_to_threshold(steps: npt.ArrayLike, returns: npt.ArrayLike, threshold: float) -> float | None:
    """Time to threshold: first step at which the curve reaches ``>= threshold``; None if it never does.

    Between the last evaluation below the threshold and the first at or above it, the step is linearly
    interpolated (the crossing of the segment). A curve already at the threshold at its first evaluation
    returns that step (0.0 for an evaluation before training).
    """
    s, r = as_curve((steps, returns), "curve")
    _check_threshold(threshold)
    return _optional(_crossings(s, r[None, :], threshold)[0])


def mean_steps_to_threshold(curves: Sequence[Curve], threshold: float) -> float | None:
    """`steps_to_threshold` on the mean curve across seeds (robust to one unlucky seed never reaching)."""
    steps, returns = as_variant(curves, "curves")
    _check_threshold(threshold)
    return _optional(_crossings(steps, returns.mean(axis=0, keepdims=True), threshold)[0])


def _check_fraction(fraction: float) -> None:
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction: must be in (0, 1], got {fraction}")


def untrained_return(curves: Sequence[Curve]) -> float:
    """The untrained policy's return: the mean over seeds of the first evaluation (step 0) of a variant
    trained from scratch (scratch, or the reference stage: the same initial policy per seed)."""
    steps, returns = as_variant(curves, "curves")
    if steps[0] != 0:
        raise ValueError(f"untrained_return: the first evaluation is at step {steps[0]}, not before training")
    return float(returns[:, 0].mean())


def reference_threshold(untrained: float, reference: float, fraction: float = 0.9) -> float:
    """``untrained + fraction * (reference - untrained)``: that fraction of the way to what good means.

    Sign-safe (returns may be negative). Raises ValueError when the reference does not improve on the
    untrained policy: there is then no way to get "good" on which to measure steps."""
    _check_fraction(fraction)
    if not (np.isfinite(untrained) and np.isfinite(reference)):
        raise ValueError(
            f"reference_threshold: untrained {untrained} and reference {reference} must be finite"
        )
    if reference <= untrained:
        raise ValueError(
            f"the reference return {reference:.4g} does not improve on the untrained policy's {untrained:.4g}"
        )
    return untrained + fraction * (reference - untrained)


def fraction_of_reference(value: float, untrained: float, reference: float) -> float:
    """Where `value` lies from the untrained policy (0) to the reference (1): a normalized score."""
    return (value - untrained) / (reference - untrained)


def _first_after_zero(steps: FloatArray, name: str) -> float:
    positive = steps[steps > 0]
    if positive.size == 0:
        raise ValueError(f"{name}: needs an evaluation after step 0")
    return float(positive[0])


def _ratios(
    ft_cross: FloatArray, sc_cross: FloatArray, floors: tuple[float, float], budgets: tuple[float, float]
) -> tuple[FloatArray, npt.NDArray[np.int_]]:
    """Ratio and kind code (0 exact, 1 lower, 2 upper, 3 undefined) for arrays of mean-curve crossings."""
    ft_ok, sc_ok = ~np.isnan(ft_cross), ~np.isnan(sc_cross)
    ft = np.where(ft_ok, np.maximum(ft_cross, floors[0]), budgets[0])
    sc = np.where(sc_ok, np.maximum(sc_cross, floors[1]), budgets[1])
    kind = np.select([ft_ok & sc_ok, ft_ok, sc_ok], [0, 1, 2], default=3)
    return np.where(kind == 3, np.nan, sc / ft), kind


_KINDS: tuple[RatioKind, ...] = ("exact", "lower_bound", "upper_bound", "undefined")


def sample_efficiency_ratio(
    finetune_curves: Sequence[Curve],
    scratch_curves: Sequence[Curve],
    threshold: float,
    confidence: float = 0.95,
    n_resamples: int = 2_000,
    *,
    rng: np.random.Generator,
) -> RatioResult:
    """How many times fewer target steps fine-tune needs than scratch to reach `threshold`.

    Point estimate: scratch's steps-to-threshold over fine-tune's, each on its variant's mean curve.
    A crossing below a variant's first evaluation after step 0 is raised to that step (the evaluations
    cannot resolve earlier), so fine-tune reaching the threshold at step 0 gives a finite ratio with
    ``finetune_floored`` set rather than inf; scratch is floored the same way, so the ratio is never 0.
    A variant that never reaches the threshold is credited with its budget (last evaluation step), which
    turns the ratio into a bound (see `RatioResult`). The CI resamples seeds with replacement within each
    variant, recomputes both mean curves and the ratio by the same rules, and takes percentiles.
    """
    ft_steps, ft = as_variant(finetune_curves, "finetune_curves")
    sc_steps, sc = as_variant(scratch_curves, "scratch_curves")
    _check_threshold(threshold)
    _check_confidence(confidence)
    _check_bootstrap(n_resamples, rng)
    floors = (_first_after_zero(ft_steps, "finetune_curves"), _first_after_zero(sc_steps, "scratch_curves"))
    budgets = (float(ft_steps[-1]), float(sc_steps[-1]))
    ft_cross = _crossings(ft_steps, ft.mean(axis=0, keepdims=True), threshold)
    sc_cross = _crossings(sc_steps, sc.mean(axis=0, keepdims=True), threshold)
    point, kind = _ratios(ft_cross, sc_cross, floors, budgets)

    ft_boot = _crossings(ft_steps, _resample_rows(ft, _STATISTICS["mean"], n_resamples, rng), threshold)
    sc_boot = _crossings(sc_steps, _resample_rows(sc, _STATISTICS["mean"], n_resamples, rng), threshold)
    boot = _ratios(ft_boot, sc_boot, floors, budgets)[0]
    defined = boot[~np.isnan(boot)]
    ci_low = ci_high = None
    if kind[0] != 3 and defined.size > 0:
        low, high = _percentile_interval(defined[:, None], confidence)
        ci_low, ci_high = float(low[0]), float(high[0])

    floored = bool(ft_cross[0] < floors[0])
    kind_name = _KINDS[int(kind[0])]
    if kind_name == "exact" and floored:  # fine-tune was there before its first evaluation after step 0
        kind_name = "lower_bound"
    return RatioResult(
        estimate=_optional(point[0]),
        kind=kind_name,
        ci_low=ci_low,
        ci_high=ci_high,
        finetune_steps=_optional(ft_cross[0]),
        scratch_steps=_optional(sc_cross[0]),
        finetune_floored=floored,
        defined_fraction=defined.size / n_resamples,
        confidence=confidence,
        finetune_budget=budgets[0],
        scratch_budget=budgets[1],
        finetune_floor=floors[0],
    )


def describe_ratio(ratio: RatioResult, fraction: float, who: str = "fine-tune") -> str:
    """The ratio in words, e.g. "fine-tune reaches 90% of the reference in 2,048 steps; scratch does not
    within 61,440: ratio >= 30.0x" (scratch here is whatever curves were compared: the reference stage;
    `who` names the fine-tuned curves)."""
    goal = f"{fraction:.0%} of the reference"
    ci = "" if ratio.ci_low is None else f" [95% CI {ratio.ci_low:.2f}, {ratio.ci_high:.2f}]"
    ft, sc = ratio.finetune_steps, ratio.scratch_steps
    if ft is None and sc is None:
        return (
            f"neither {who} (within {ratio.finetune_budget:,.0f} target steps) nor scratch (within "
            f"{ratio.scratch_budget:,.0f}) reaches {goal}: no ratio"
        )
    if ft is None:
        assert ratio.estimate is not None and sc is not None
        return (
            f"scratch reaches {goal} in {sc:,.0f} target steps; {who} does not within "
            f"{ratio.finetune_budget:,.0f}: ratio <= {ratio.estimate:.2f}x{ci}"
        )
    assert ratio.estimate is not None
    if ratio.finetune_floored:
        ft_text = f"{who} meets {goal} before any target training (at step 0){ratio.floor_note()}"
    else:
        ft_text = f"{who} reaches {goal} in {ft:,.0f} target steps"
    if sc is None:
        sc_text = f"scratch does not within {ratio.scratch_budget:,.0f}"
    else:
        sc_text = f"scratch in {sc:,.0f}"
    prefix = {"exact": "", "lower_bound": ">= ", "upper_bound": "<= "}[ratio.kind]
    return f"{ft_text}; {sc_text}: ratio {prefix}{ratio.estimate:.2f}x{ci}"
