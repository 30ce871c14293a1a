"""Transfer metrics over evaluation curves: the numbers the report of a transfer experiment prints.

A *curve* is one seed's evaluation record on the target environment, ``(steps, returns)``: target-env step
counts, non-negative and strictly increasing (step 0 = before any target training), and the evaluation
return at each. A *variant* (scratch, fine-tune, ...) is a list of curves, one per seed.

Grid convention: every function that takes the curves of one variant requires all its seeds to share one
step grid and raises ``ValueError`` otherwise. Nothing is interpolated onto a union grid: that would
invent evaluations, and extrapolating past a seed's last evaluation is guesswork. Variants may differ.

The metrics are Taylor & Stone's (jumpstart, asymptotic performance, total reward, time to threshold),
reported across seeds with confidence intervals, IQM and probability of improvement as in rliable
(Agarwal et al. 2021). Bootstrap intervals are percentile intervals over seeds; all randomness comes from
an explicit ``np.random.Generator``.

Example:
    >>> steps = np.array([0, 1000, 2000])
    >>> steps_to_threshold(steps, np.array([0.0, 10.0, 20.0]), 15.0)
    1500.0
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, TypeAlias

import numpy as np
import numpy.typing as npt
from scipy import integrate, stats

FloatArray: TypeAlias = npt.NDArray[np.float64]
Curve: TypeAlias = tuple[npt.ArrayLike, npt.ArrayLike]
Statistic: TypeAlias = Literal["mean", "median", "iqm"]
StatFn: TypeAlias = Callable[[FloatArray, int], FloatArray]  # (values, axis) -> statistic along axis
RatioKind: TypeAlias = Literal["exact", "lower_bound", "upper_bound", "undefined"]

_MAX_CHUNK_ELEMENTS = 4_000_000  # bounds bootstrap memory: resampled values held at once


@dataclass(frozen=True)
class Summary:
    """Seed-level summary of one scalar metric; the CI is the Student-t interval of the mean."""

    n: int
    mean: float
    std: float  # ddof=1; 0.0 when n == 1
    ci_low: float
    ci_high: float
    median: float
    iqm: float  # interquartile mean: scipy.stats.trim_mean(values, 0.25), as in rliable
    confidence: float = 0.95

    @property
    def ci(self) -> tuple[float, float]:
        """The confidence interval of the mean as ``(low, high)``."""
        return (self.ci_low, self.ci_high)


class Band(NamedTuple):
    """Per-step center and bootstrap band of one variant, ready for ``fill_between``."""

    steps: FloatArray
    center: FloatArray
    low: FloatArray
    high: FloatArray


@dataclass(frozen=True)
class RatioResult:
    """Sample-efficiency ratio: scratch steps-to-threshold over fine-tune steps-to-threshold.

    ``kind`` says how to read ``estimate``: ``exact``; ``lower_bound`` (scratch never reached the
    threshold, the ratio is at least scratch's budget over fine-tune's steps); ``upper_bound`` (fine-tune
    never reached it, the ratio is at most scratch's steps over fine-tune's budget); ``undefined`` (neither
    reached it; estimate and CI are None). ``finetune_steps``/``scratch_steps`` are the raw crossings of
    the mean curves (None if never reached); ``finetune_floored`` says the fine-tune crossing lay below
    its first evaluation after step 0 and was raised to it. ``defined_fraction`` is the share of bootstrap
    resamples in which a ratio existed; the CI is computed over those.
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


def _values(values: npt.ArrayLike, name: str) -> FloatArray:
    """A non-empty, finite, 1-D float array, or a ValueError naming `name`."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or inf")
    return arr


def _curve(curve: Curve, name: str) -> tuple[FloatArray, FloatArray]:
    """Validate one `(steps, returns)` curve: same length, steps >= 0 and strictly increasing."""
    try:
        steps_like, returns_like = curve
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: a curve is a (steps, returns) pair") from err
    steps = _values(steps_like, f"{name} steps")
    returns = _values(returns_like, f"{name} returns")
    if steps.shape != returns.shape:
        raise ValueError(f"{name}: {steps.size} steps but {returns.size} returns")
    if steps[0] < 0:
        raise ValueError(f"{name}: steps must be >= 0, got {steps[0]}")
    if np.any(np.diff(steps) <= 0):
        raise ValueError(f"{name}: steps must be strictly increasing (sorted, no duplicates)")
    return steps, returns


def _variant(curves: Sequence[Curve], name: str) -> tuple[FloatArray, FloatArray]:
    """Validate the seeds of one variant; return the shared grid and the (seeds, evals) return matrix."""
    if len(curves) == 0:
        raise ValueError(f"{name}: no curves")
    parsed = [_curve(curve, f"{name}[{i}]") for i, curve in enumerate(curves)]
    grid = parsed[0][0]
    for i, (steps, _) in enumerate(parsed[1:], start=1):
        if not np.array_equal(steps, grid):
            raise ValueError(
                f"{name}[{i}]: step grid differs from {name}[0]; seeds of one variant must share one grid"
            )
    return grid, np.stack([returns for _, returns in parsed])


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: must be in (0, 1), got {confidence}")


def _check_bootstrap(n_resamples: int, rng: np.random.Generator) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected np.random.Generator (np.random.default_rng(seed)), got {type(rng)}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples: must be >= 1, got {n_resamples}")


_STATISTICS: dict[str, StatFn] = {
    "mean": lambda x, axis: np.mean(x, axis=axis),
    "median": lambda x, axis: np.median(x, axis=axis),
    "iqm": lambda x, axis: stats.trim_mean(x, 0.25, axis=axis),  # rliable's interquartile mean
}


def _statistic(name: str) -> StatFn:
    if name not in _STATISTICS:
        raise ValueError(f"statistic: unknown {name!r} (allowed: {', '.join(_STATISTICS)})")
    return _STATISTICS[name]


def _t_half_width(standard_error: float, df: float, confidence: float) -> float:
    """Half width of a Student-t interval; 0 when there is no spread or no degree of freedom."""
    if standard_error == 0.0 or df <= 0:
        return 0.0
    return float(stats.t.ppf((1.0 + confidence) / 2.0, df)) * standard_error


def summary(values: npt.ArrayLike, confidence: float = 0.95) -> Summary:
    """Mean, std, Student-t CI of the mean, median and IQM of one value per seed.

    Example: ``summary([1, 2, 3, 4, 5])`` has mean 3, std sqrt(2.5) and CI
    ``3 -/+ t(0.975, 4) * sqrt(2.5) / sqrt(5)``. With one value the CI is ``(mean, mean)``.
    """
    x = _values(values, "values")
    _check_confidence(confidence)
    n = int(x.size)
    mean = float(np.mean(x))
    std = float(np.std(x, ddof=1)) if n > 1 else 0.0
    half = _t_half_width(std / np.sqrt(n), n - 1, confidence)
    median, iqm = float(np.median(x)), float(_STATISTICS["iqm"](x, 0))
    return Summary(n, mean, std, mean - half, mean + half, median, iqm, confidence)


def _resample_rows(data: FloatArray, fn: StatFn, n_resamples: int, rng: np.random.Generator) -> FloatArray:
    """`fn` over the rows (seeds) of `data` (n, k), for resamples of rows with replacement."""
    n, k = data.shape
    chunk = max(1, _MAX_CHUNK_ELEMENTS // (n * k))
    out = np.empty((n_resamples, k), dtype=np.float64)
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        out[start:stop] = fn(data[rng.integers(0, n, size=(stop - start, n))], 1)
    return out


def _percentile_interval(samples: FloatArray, confidence: float) -> tuple[FloatArray, FloatArray]:
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [alpha, 1.0 - alpha], axis=0)
    return np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)


def bootstrap_ci(
    values: npt.ArrayLike,
    statistic: Statistic = "mean",
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    *,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """Percentile-bootstrap CI of `statistic` over seeds; the same seeded `rng` gives the same interval."""
    x = _values(values, "values")
    fn = _statistic(statistic)
    _check_confidence(confidence)
    _check_bootstrap(n_resamples, rng)
    low, high = _percentile_interval(_resample_rows(x[:, None], fn, n_resamples, rng), confidence)
    return float(low[0]), float(high[0])


def curve_band(
    curves: Sequence[Curve],
    statistic: Statistic = "mean",
    confidence: float = 0.95,
    n_resamples: int = 2_000,
    *,
    rng: np.random.Generator,
) -> Band:
    """Per step: `statistic` across seeds and its percentile-bootstrap band (seeds resampled jointly)."""
    steps, returns = _variant(curves, "curves")
    fn = _statistic(statistic)
    _check_confidence(confidence)
    _check_bootstrap(n_resamples, rng)
    low, high = _percentile_interval(_resample_rows(returns, fn, n_resamples, rng), confidence)
    return Band(steps, fn(returns, 0), low, high)


def jumpstart(
    finetune_curves: Sequence[Curve], scratch_curves: Sequence[Curve], confidence: float = 0.95
) -> Summary:
    """Initial gain: fine-tune's first-evaluation return minus scratch's (both must start at one step).

    Equal seed counts: seeds are paired by index and the result summarizes the per-seed differences.
    Different counts: there is nothing to pair, so the means are compared instead: ``mean``, ``median``
    and ``iqm`` are differences of the two groups' statistics, ``std`` is ``sqrt(var_ft + var_scratch)``,
    the CI is Welch's t-interval for the difference of means and ``n`` is the smaller seed count.
    """
    ft_steps, ft = _variant(finetune_curves, "finetune_curves")
    sc_steps, sc = _variant(scratch_curves, "scratch_curves")
    if ft_steps[0] != sc_steps[0]:
        raise ValueError(f"jumpstart: first steps differ (fine-tune {ft_steps[0]}, scratch {sc_steps[0]})")
    a, b = ft[:, 0], sc[:, 0]
    if a.size == b.size:
        return summary(a - b, confidence)
    _check_confidence(confidence)
    fa, fb = summary(a, confidence), summary(b, confidence)
    var_a, var_b = fa.std**2 / a.size, fb.std**2 / b.size
    terms = [v**2 / (n - 1) for v, n in ((var_a, a.size), (var_b, b.size)) if v > 0]
    df = (var_a + var_b) ** 2 / sum(terms) if terms else 0.0
    diff = fa.mean - fb.mean
    half = _t_half_width(float(np.sqrt(var_a + var_b)), df, confidence)
    std = float(np.sqrt(fa.std**2 + fb.std**2))
    n = min(a.size, b.size)
    return Summary(n, diff, std, diff - half, diff + half, fa.median - fb.median, fa.iqm - fb.iqm, confidence)


def return_at_budget(curves: Sequence[Curve], confidence: float = 0.95) -> Summary:
    """Asymptotic performance: summary of each seed's last evaluation return."""
    _, returns = _variant(curves, "curves")
    return summary(returns[:, -1], confidence)


def area_under_curve(curves: Sequence[Curve], confidence: float = 0.95) -> Summary:
    """Total reward: per seed, the trapezoid area under the curve divided by the step range.

    The normalization makes it the time-averaged return, in return units and comparable across budgets.
    Needs at least two evaluations.
    """
    steps, returns = _variant(curves, "curves")
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
    s, r = _curve((steps, returns), "curve")
    _check_threshold(threshold)
    return _optional(_crossings(s, r[None, :], threshold)[0])


def mean_steps_to_threshold(curves: Sequence[Curve], threshold: float) -> float | None:
    """`steps_to_threshold` on the mean curve across seeds (robust to one unlucky seed never reaching)."""
    steps, returns = _variant(curves, "curves")
    _check_threshold(threshold)
    return _optional(_crossings(steps, returns.mean(axis=0, keepdims=True), threshold)[0])


def _check_fraction(fraction: float) -> None:
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction: must be in (0, 1], got {fraction}")


def fraction_of_final(scratch_curves: Sequence[Curve], fraction: float = 0.9) -> float:
    """``fraction * final``, final = mean over seeds of scratch's last return; for positive returns only.

    "90% of" a negative return would be a *higher* return than the final one, so a non-positive final
    raises ValueError: use `normalized_threshold`.
    """
    _check_fraction(fraction)
    final = float(_variant(scratch_curves, "scratch_curves")[1][:, -1].mean())
    if final <= 0:
        raise ValueError(f"fraction_of_final: final return {final} is not positive; use normalized_threshold")
    return fraction * final


def normalized_threshold(
    scratch_curves: Sequence[Curve], fraction: float = 0.9, *, variants: Sequence[Sequence[Curve]]
) -> float:
    """``initial + fraction * (final - initial)``: that fraction of the way from worst start to scratch's end.

    ``final`` is the mean over seeds of scratch's last evaluation. ``initial`` is the worst (lowest)
    initial return among all variants compared: for each variant in `variants` and scratch itself, the
    mean over its seeds of the first evaluation, then the minimum. Sign-safe, and the same threshold for
    every variant. Raises ValueError if scratch's final return does not exceed that initial return.
    """
    _check_fraction(fraction)
    scratch = _variant(scratch_curves, "scratch_curves")[1]
    firsts = [float(scratch[:, 0].mean())]
    firsts += [float(_variant(v, f"variants[{i}]")[1][:, 0].mean()) for i, v in enumerate(variants)]
    initial, final = min(firsts), float(scratch[:, -1].mean())
    if final <= initial:
        raise ValueError(f"normalized_threshold: scratch final return {final} <= worst initial {initial}")
    return initial + fraction * (final - initial)


def default_threshold(
    scratch_curves: Sequence[Curve], fraction: float = 0.9, *, variants: Sequence[Sequence[Curve]]
) -> float:
    """The project's convention for time-to-threshold: `normalized_threshold` (see there).

    It is the default over `fraction_of_final` because returns are often negative (Pendulum-v1 ends near
    -150), and a threshold defined on the learned range means the same thing for every reward scale.
    """
    return normalized_threshold(scratch_curves, fraction, variants=variants)


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
    ft_steps, ft = _variant(finetune_curves, "finetune_curves")
    sc_steps, sc = _variant(scratch_curves, "scratch_curves")
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

    return RatioResult(
        estimate=_optional(point[0]),
        kind=_KINDS[int(kind[0])],
        ci_low=ci_low,
        ci_high=ci_high,
        finetune_steps=_optional(ft_cross[0]),
        scratch_steps=_optional(sc_cross[0]),
        finetune_floored=bool(ft_cross[0] < floors[0]),
        defined_fraction=defined.size / n_resamples,
        confidence=confidence,
    )


def probability_of_improvement(a_values: npt.ArrayLike, b_values: npt.ArrayLike) -> float:
    """``P(X_a > X_b) + 0.5 * P(X_a == X_b)`` over all seed pairs: rliable's Mann-Whitney U / (n_a n_b)."""
    a = _values(a_values, "a_values")
    b = _values(b_values, "b_values")
    greater = np.mean(a[:, None] > b[None, :])
    ties = np.mean(a[:, None] == b[None, :])
    return float(greater + 0.5 * ties)
