"""The fit: CMA-ES over the continuous dynamics axes, enumeration over the whole-numbered ones, simulated
moments for noise, then what the data can and cannot tell apart.

Search (deterministic for a seed): the discrete axes start at their range's middle; a short CMA-ES run
fits the continuous ones; each discrete axis in turn tries every value (a short run from the current best
each) and keeps the best. With several discrete axes the turns go round again while any of them changes:
an axis chosen while another still sat at its middle (a control rate chosen under the wrong latency) is
chosen again under the others' new values - a later turn runs only the `FINALISTS` values that score
best at the current point. A final, longer run polishes the continuous axes - on the noise-corrected
error where the sensor noise is known (`Replay.loss`). One continuous axis: a bounded scalar search
instead (CMA-ES needs two).

What the data can tell of the continuous axes: `identify`. Discrete axes: identified when the same
value wins on at least `AGREE` of bootstrap resamples of the episodes.
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import cma
import numpy as np
from scipy.optimize import minimize, minimize_scalar

from simreal.simulation.calibration.identify import AxisFit, identifiability
from simreal.simulation.calibration.model import CalAxis
from simreal.simulation.calibration.replay import Replay, Setting

log = logging.getLogger("simreal")

AGREE = 0.9
"""A discrete axis is identified when its best value wins on this share of episode resamples."""
PRIOR = 1e-5
"""A faint pull toward the ranges' middles (per squared half-width): along directions the data leave
flat it picks the member of the equivalence class nearest the middles, instead of a search drifting to
its bounds, and costs nothing measurable elsewhere."""
SHORT, LONG, POLISH, JACKKNIFE = 80, 300, 300, 60
"""Replay evaluations (at most) of a screening run, of the final CMA-ES run, of the local polish after it,
and of each jackknife refit."""
STEP = 1e-4
"""The polish's finite-difference step, in range half-widths."""
FOLDS = 8
"""The most jackknife refits: episodes are dealt into at most this many groups, each left out in turn."""
RESAMPLES = 200
FINALISTS = 2
"""Values of a discrete axis a later turn fits (a short run each) besides its current one: the best at the
current point, one evaluation each."""
ROUNDS = 3
"""The most turns of each discrete axis."""


@dataclass
class FitResult:
    axes: list[AxisFit]
    setting: Setting
    loss_before: float
    loss_after: float
    combinations: list[dict[str, Any]]
    evaluations: int
    discrete_votes: dict[str, dict[str, float]]
    noise_corrected: float = 0.0


def _loss(replay: Replay, u: np.ndarray, discrete: dict[str, float], noise: float) -> float:
    u = np.asarray(u, dtype=np.float64)
    return replay.loss(replay.setting(u, discrete), noise) + PRIOR * float(u @ u)


_FORKED: Replay | None = None
"""The replay a worker process inherited (set by the parent just before it forks its pool)."""


def _in_worker(job: tuple[np.ndarray, dict[str, float], float, frozenset[int]]) -> float:
    assert _FORKED is not None
    u, discrete, noise, left_out = job
    _FORKED.left_out = left_out
    return _loss(_FORKED, u, discrete, noise)


def _refit_in_worker(
    job: tuple[np.ndarray, dict[str, float], float, frozenset[int]],
) -> tuple[np.ndarray, int]:
    """One jackknife refit (`_refit`) in a worker, its evaluations one after another; the estimate and
    the evaluations it spent."""
    assert _FORKED is not None
    u, discrete, noise, fold = job
    counter = _Counter(_FORKED)
    counter.noise = noise
    return _refit(counter, u, discrete, fold), counter.calls


class _Counter:
    """Replay evaluations, counted; batches of them spread over worker processes where there are any.
    Every evaluation sets the sim's physics and each segment's start state afresh (from a history-free
    warm start), so a result does not depend on which process computed it, nor on how many there are."""

    def __init__(self, replay: Replay, pool: Any = None) -> None:
        self.replay = replay
        self.calls = 0
        self.noise = 0.0
        self.pool = pool
        self.started = time.perf_counter()

    def progress(self, done: str) -> None:
        """One log line: what the fit has just done, the evaluations and seconds so far (a fit on a slow
        simulator takes minutes)."""
        seconds = time.perf_counter() - self.started
        log.info("calibration: %s (%d evaluations, %.0f s)", done, self.calls, seconds)

    def loss(self, u: np.ndarray, discrete: dict[str, float]) -> float:
        return self.losses([u], discrete)[0]

    def losses(self, us: list[np.ndarray], discrete: dict[str, float]) -> list[float]:
        return self.points([(u, discrete) for u in us])

    def points(self, points: list[tuple[np.ndarray, dict[str, float]]]) -> list[float]:
        """The losses of `(u, discrete)` candidates."""
        self.calls += len(points)
        if self.pool is None or len(points) < 2:
            return [_loss(self.replay, u, d, self.noise) for u, d in points]
        jobs = [(np.asarray(u, dtype=np.float64), d, self.noise, self.replay.left_out) for u, d in points]
        return list(self.pool.map(_in_worker, jobs, chunksize=1))


def workers_available(asked: int) -> int:
    """`asked` worker processes, or one per core the process may use for 0."""
    if asked > 0:
        return asked
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextmanager
def _pool(replay: Replay, workers: int) -> Iterator[Any]:
    """Worker processes holding copies of `replay` (forked: nothing is rebuilt or pickled but the
    candidates), or None for one worker or where fork is not offered."""
    global _FORKED
    if workers < 2 or "fork" not in mp.get_all_start_methods():
        yield None
        return
    _FORKED = replay
    try:
        with mp.get_context("fork").Pool(workers) as pool:
            yield pool
    finally:
        _FORKED = None


def _minimize(
    counter: _Counter, u0: np.ndarray, discrete: dict[str, float], budget: int, seed: int
) -> tuple[np.ndarray, float]:
    axes = counter.replay.continuous
    if not axes:
        return u0, counter.loss(u0, discrete)
    bounds = [a.search_bounds() for a in axes]
    if len(axes) == 1:
        low, high = bounds[0]
        res = minimize_scalar(
            lambda x: counter.loss(np.array([x]), discrete),
            bounds=(low, high),
            method="bounded",
            options={"maxiter": max(budget // 2, 10), "xatol": 1e-3},
        )
        return np.array([float(res.x)]), float(res.fun)
    start = np.clip(u0, [b[0] for b in bounds], [b[1] for b in bounds])
    es = cma.CMAEvolutionStrategy(
        start.tolist(),
        0.5,
        {
            "bounds": [[b[0] for b in bounds], [b[1] for b in bounds]],
            "maxfevals": budget,
            "seed": seed + 1,
            "verbose": -9,
            "tolfun": 1e-9,
        },
    )
    best_u, best = start, counter.loss(start, discrete)
    while not es.stop():
        xs = es.ask()
        fs = counter.losses([np.asarray(x) for x in xs], discrete)
        es.tell(xs, fs)
        i = int(np.argmin(fs))
        if fs[i] < best:
            best_u, best = np.asarray(xs[i], dtype=np.float64), fs[i]
    return best_u, best


class _Spent(Exception):
    """A polish's budget is spent (L-BFGS-B's `maxfun` is only checked between its iterations: a line
    search can pass it)."""


def _polish(
    counter: _Counter, u0: np.ndarray, discrete: dict[str, float], budget: int
) -> tuple[np.ndarray, float]:
    """A local quasi-Newton run (L-BFGS-B, finite-difference gradients) from `u0`: where CMA-ES crawls
    along a valley that the data leave nearly flat (confounded axes), this follows it in few steps. It
    spends at most `budget` evaluations in whole gradient batches (at least two batches); stopped there,
    the best point it saw."""
    axes = counter.replay.continuous
    if not axes:
        return u0, counter.loss(u0, discrete)
    bounds = [a.search_bounds() for a in axes]
    high = np.array([b[1] for b in bounds])
    batches = max(budget // (len(axes) + 1), 2)
    spent = 0
    best: tuple[np.ndarray, float] = (np.asarray(u0, dtype=np.float64), math.inf)

    def with_gradient(x: np.ndarray) -> tuple[float, np.ndarray]:
        """The loss and its forward-difference gradient (a step back at an upper bound): one batch."""
        nonlocal spent, best
        if spent >= batches:
            raise _Spent
        spent += 1
        steps = np.where(x + STEP <= high, STEP, -STEP)
        points = [x, *(x + np.eye(len(x))[i] * steps[i] for i in range(len(x)))]
        values = counter.losses(points, discrete)
        if values[0] < best[1]:
            best = (np.array(x, dtype=np.float64), values[0])
        return values[0], (np.array(values[1:]) - values[0]) / steps

    try:
        res = minimize(
            with_gradient,
            np.clip(u0, [b[0] for b in bounds], high),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxfun": batches, "ftol": 1e-12, "gtol": 1e-9},
        )
    except _Spent:
        return best
    return np.asarray(res.x, dtype=np.float64), float(res.fun)


def _middle(axis: CalAxis) -> float:
    assert axis.values is not None
    centre = (axis.axis.low + axis.axis.high) / 2
    return min(axis.values, key=lambda v: (abs(v - centre), v))


def fit(
    replay: Replay,
    seed: int,
    noise_level: Callable[[Setting], float] | None = None,
    workers: int = 1,
) -> FitResult:
    """Fit every dynamics axis of `replay` (see the module docstring). With `noise_level` (the sensor
    noise std a setting's replay errors show), the final run minimizes the noise-corrected error
    (`Replay.loss` with that noise). `workers` processes share the evaluations - a batch's candidates,
    or the jackknife's refits, one per process - with the same result for any number."""
    with _pool(replay, workers) as pool:
        return _fit(_Counter(replay, pool), seed, noise_level)


def _fit(counter: _Counter, seed: int, noise_level: Callable[[Setting], float] | None) -> FitResult:
    replay = counter.replay
    discrete = {a.name: _middle(a) for a in replay.discrete}
    u = np.zeros(len(replay.continuous))
    loss_before = counter.loss(u, discrete)
    u, best = _minimize(counter, u, discrete, SHORT, seed)
    counter.progress(
        f"{len(replay.continuous)} continuous and {len(replay.discrete)} discrete axes, "
        f"{len(replay.starts(replay.setting(u, discrete).obs_delay))} segments a replay; first short run done"
    )
    u, discrete, fitted = _discrete_search(counter, u, discrete, best, seed)
    if noise_level is not None:
        counter.noise = noise_level(replay.setting(u, discrete))
    u, best = _minimize(counter, u, discrete, LONG, seed)
    u, best = _polish(counter, u, discrete, POLISH)
    counter.progress(
        f"final search and polish{' on the noise-corrected error' if counter.noise else ''} done"
    )
    setting = replay.setting(u, discrete)
    best = replay.loss(setting)
    covariance = _jackknife(counter, u, discrete)
    counter.progress(
        "jackknife refits done"
        if covariance is not None
        else "no jackknife (it needs 3 episodes and a continuous axis)"
    )
    axes, combinations = identifiability(replay, u, discrete, covariance)
    votes: dict[str, dict[str, float]] = {}
    for axis in replay.discrete:
        tried = {v: (u_v, {**discrete, axis.name: v}) for v, u_v in fitted[axis.name].items()}
        share, vote = _discrete_votes(replay, tried, discrete[axis.name], seed)
        votes[axis.name] = vote
        ok = share >= AGREE
        axes.append(
            AxisFit(
                axis,
                discrete[axis.name],
                0.0 if ok else None,
                ok,
                note=f"best on {share:.0%} of episode resamples",
            )
        )
    return FitResult(axes, setting, loss_before, best, combinations, counter.calls, votes, counter.noise)


def _discrete_search(
    counter: _Counter, u: np.ndarray, discrete: dict[str, float], best: float, seed: int
) -> tuple[np.ndarray, dict[str, float], dict[str, dict[float, np.ndarray]]]:
    """The discrete axes' values by turns (see the module docstring), the continuous fit that goes with
    them, and per axis each value's last fitted continuous point (what the votes compare). An axis's turn
    is skipped once no other axis has changed since its last one."""
    axes = counter.replay.discrete
    fitted: dict[str, dict[float, np.ndarray]] = {a.name: {} for a in axes}
    settled = 0  # turns in a row since the last change (the changed axis counts as settled)
    for turn in range(ROUNDS * len(axes)):
        if turn >= len(axes) and settled >= len(axes):
            break
        axis = axes[turn % len(axes)]
        assert axis.values is not None
        current = discrete[axis.name]
        if turn < len(axes):  # the first turn: every value
            values = list(axis.values)
            options: dict[float, tuple[np.ndarray, float]] = {}
        else:  # later: the current value as it stands, and the finalists at the current point
            others = [v for v in axis.values if v != current]
            screened = counter.points([(u, {**discrete, axis.name: v}) for v in others])
            values = [others[i] for i in np.argsort(screened, kind="stable")[:FINALISTS]]
            options = {current: (u, best)}
        for value in values:
            options[value] = _minimize(counter, u, {**discrete, axis.name: value}, SHORT, seed)
        pick = min(options, key=lambda v: options[v][1])
        for value, (u_v, _) in options.items():
            fitted[axis.name][value] = u_v
        u, best = options[pick]
        settled = 1 if pick != current else settled + 1
        discrete = {**discrete, axis.name: pick}
        counter.progress(f"{axis.name} = {pick:g} of {len(options)} values fitted")
    return u, discrete, fitted


def _discrete_votes(
    replay: Replay, options: dict[float, tuple[np.ndarray, dict[str, float]]], chosen: float, seed: int
) -> tuple[float, dict[str, float]]:
    """How often `chosen` has the lowest loss when the episodes are resampled, and each value's share."""
    values = sorted(options)
    per = np.array([replay.episode_losses(replay.setting(*options[v])) for v in values])  # (values, episodes)
    usable = ~np.isnan(per).any(axis=0)
    per = per[:, usable]
    if per.shape[1] == 0:
        return 0.0, {}
    rng = np.random.default_rng([seed, 7])
    wins = np.zeros(len(values))
    for _ in range(RESAMPLES):
        pick = rng.integers(0, per.shape[1], size=per.shape[1])
        wins[int(np.argmin(per[:, pick].mean(axis=1)))] += 1
    shares = wins / RESAMPLES
    return float(shares[values.index(chosen)]), {
        f"{v:g}": float(s) for v, s in zip(values, shares, strict=True)
    }


def _refit(counter: _Counter, u: np.ndarray, discrete: dict[str, float], fold: frozenset[int]) -> np.ndarray:
    """The fit polished again from `u` without the episodes in `fold`."""
    replay = counter.replay
    replay.left_out = fold
    try:
        return _polish(counter, u, discrete, JACKKNIFE)[0]
    finally:
        replay.left_out = frozenset()


def _jackknife(counter: _Counter, u: np.ndarray, discrete: dict[str, float]) -> np.ndarray | None:
    """The fit's covariance from delete-a-group jackknife refits - the episodes dealt into at most `FOLDS`
    groups, each left out in turn and the fit polished again from the full one: the sampling spread of
    the estimator itself, nonlinearity and all (None under 3 episodes)."""
    replay = counter.replay
    episodes = sorted({e for e, _ in replay.starts(replay.setting(u, discrete).obs_delay)})
    if len(episodes) < 3 or not len(u):
        return None
    folds = [frozenset(episodes[i :: min(FOLDS, len(episodes))]) for i in range(min(FOLDS, len(episodes)))]
    if counter.pool is None:
        estimates = [_refit(counter, u, discrete, fold) for fold in folds]
    else:  # a refit per worker, whole: its batches of d + 1 would leave workers idle between them
        jobs = [(np.asarray(u, dtype=np.float64), discrete, counter.noise, fold) for fold in folds]
        done = counter.pool.map(_refit_in_worker, jobs, chunksize=1)
        estimates = [estimate for estimate, _ in done]
        counter.calls += sum(calls for _, calls in done)
    dev = np.array(estimates) - np.mean(estimates, axis=0)
    return (len(folds) - 1) / len(folds) * dev.T @ dev
