"""Across-seed statistics with one confidence-interval method: the percentile bootstrap over seeds.

Every "95% CI" simreal prints - of a final return, a success rate, a jumpstart, a curve band, a ratio -
is a percentile-bootstrap interval over seeds (`CI_METHOD`), with all randomness from an explicit,
seeded ``np.random.Generator``, so the same data always gives the same interval. Statistics across
seeds: mean, median and the interquartile mean (IQM, as in rliable, Agarwal et al. 2021); probability
of improvement is rliable's Mann-Whitney estimate.

Example:
    >>> summary([1.0, 2.0, 3.0]).mean
    2.0
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, TypeAlias

import numpy as np
import numpy.typing as npt
from scipy import stats

FloatArray: TypeAlias = npt.NDArray[np.float64]
Curve: TypeAlias = tuple[npt.ArrayLike, npt.ArrayLike]
Statistic: TypeAlias = Literal["mean", "median", "iqm"]
StatFn: TypeAlias = Callable[[FloatArray, int], FloatArray]  # (values, axis) -> statistic along axis

N_RESAMPLES = 10_000
CI_SEED = 0
CI_METHOD = f"percentile bootstrap over seeds ({N_RESAMPLES:,} resamples, seeded)"
"""The one confidence-interval method of the project, named in every report."""

_MAX_CHUNK_ELEMENTS = 4_000_000  # bounds bootstrap memory: resampled values held at once


@dataclass(frozen=True)
class Summary:
    """Seed-level summary of one scalar metric; the CI is the percentile bootstrap of the mean."""

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


def as_values(values: npt.ArrayLike, name: str) -> FloatArray:
    """A non-empty, finite, 1-D float array, or a ValueError naming `name`."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or inf")
    return arr


def as_curve(curve: Curve, name: str) -> tuple[FloatArray, FloatArray]:
    """Validate one `(steps, returns)` curve: same length, steps >= 0 and strictly increasing."""
    try:
        steps_like, returns_like = curve
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: a curve is a (steps, returns) pair") from err
    steps = as_values(steps_like, f"{name} steps")
    returns = as_values(returns_like, f"{name} returns")
    if steps.shape != returns.shape:
        raise ValueError(f"{name}: {steps.size} steps but {returns.size} returns")
    if steps[0] < 0:
        raise ValueError(f"{name}: steps must be >= 0, got {steps[0]}")
    if np.any(np.diff(steps) <= 0):
        raise ValueError(f"{name}: steps must be strictly increasing (sorted, no duplicates)")
    return steps, returns


def as_variant(curves: Sequence[Curve], name: str) -> tuple[FloatArray, FloatArray]:
    """Validate the seeds of one variant; return the shared grid and the (seeds, evals) return matrix."""
    if len(curves) == 0:
        raise ValueError(f"{name}: no curves")
    parsed = [as_curve(curve, f"{name}[{i}]") for i, curve in enumerate(curves)]
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


def seeded(rng: np.random.Generator | None) -> np.random.Generator:
    """`rng`, or the project's fixed bootstrap generator: the same data always gives the same interval."""
    return rng if rng is not None else np.random.default_rng(CI_SEED)


def summary(
    values: npt.ArrayLike, confidence: float = 0.95, rng: np.random.Generator | None = None
) -> Summary:
    """Mean, std, bootstrap CI of the mean, median and IQM of one value per seed.

    With one value the CI is ``(mean, mean)``: one seed says nothing about the spread."""
    x = as_values(values, "values")
    _check_confidence(confidence)
    n = int(x.size)
    mean = float(np.mean(x))
    std = float(np.std(x, ddof=1)) if n > 1 else 0.0
    low, high = bootstrap_ci(x, "mean", confidence, rng=seeded(rng))
    median, iqm = float(np.median(x)), float(_STATISTICS["iqm"](x, 0))
    return Summary(n, mean, std, low, high, median, iqm, confidence)


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
    n_resamples: int = N_RESAMPLES,
    *,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """Percentile-bootstrap CI of `statistic` over seeds; the same seeded `rng` gives the same interval."""
    x = as_values(values, "values")
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
    steps, returns = as_variant(curves, "curves")
    fn = _statistic(statistic)
    _check_confidence(confidence)
    _check_bootstrap(n_resamples, rng)
    low, high = _percentile_interval(_resample_rows(returns, fn, n_resamples, rng), confidence)
    return Band(steps, fn(returns, 0), low, high)


def clearly_above(a: npt.ArrayLike, b: npt.ArrayLike, z: float) -> bool:
    """Whether the mean of `a` beats the mean of `b` by more than `z` standard errors of the difference:
    paired where they have one length (`a[k]` and `b[k]` from the same episode seed), else of two
    independent means; never with a single value on a side, where no error can be measured."""
    x, y = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if min(x.size, y.size) < 2:
        return False
    gain = float(x.mean() - y.mean())
    if x.size == y.size:
        se = float((x - y).std(ddof=1) / np.sqrt(x.size))
    else:
        se = float(np.sqrt(x.var(ddof=1) / x.size + y.var(ddof=1) / y.size))
    return gain > 0 and gain > z * se


def probability_of_improvement(a_values: npt.ArrayLike, b_values: npt.ArrayLike) -> float:
    """``P(X_a > X_b) + 0.5 * P(X_a == X_b)`` over all seed pairs: rliable's Mann-Whitney U / (n_a n_b)."""
    a = as_values(a_values, "a_values")
    b = as_values(b_values, "b_values")
    greater = np.mean(a[:, None] > b[None, :])
    ties = np.mean(a[:, None] == b[None, :])
    return float(greater + 0.5 * ties)
