"""Per-step noise by simulated moments: the spread of the one-step replay errors on the recording, matched
by the spread the same replay gives on synthetic data with known noise.

With the fitted dynamics as the truth, synthetic one-step errors are made for a grid of noise levels
(noise on the start state and on the next observation for sensor noise, on the command for actuator
noise); the level whose mean squared error equals the recording's is the estimate, interpolated on the
grid in the noise's variance (the moment grows with its square). Its standard deviation comes from
resampling the recording's episodes. Model error the fit leaves shows up as noise (it reads high where
the dynamics fit is imperfect); on panel targets it read within a few percent of the noise the
recording actually holds (BENCHMARKS.md, "Sensor noise read in its variance"). With both sensor and
actuator noise ranged, one spread cannot separate them: the first is fit and the other reported
confounded with it.
"""

from __future__ import annotations

import numpy as np

from simreal.simulation.calibration.fit import RESAMPLES
from simreal.simulation.calibration.identify import AxisFit
from simreal.simulation.calibration.model import CalAxis
from simreal.simulation.calibration.replay import Replay, Setting

GRID = 9
"""Noise levels simulated, from 0 to `REACH` times the range's high end."""
REACH = 4.0


def _level(moment: float, grid: np.ndarray, simulated: np.ndarray) -> float:
    """The noise level whose simulated moment is `moment`, interpolated in the variance: the moment
    grows with the noise's square, so a straight line through it against the std itself reads every
    level between two grid points low (a level well under the first one by a factor of several)."""
    order = np.argsort(simulated)
    return float(np.sqrt(np.interp(moment, simulated[order], grid[order] ** 2)))


def fit_noise(replay: Replay, setting: Setting, axes: list[CalAxis], seed: int) -> list[AxisFit]:
    """An `AxisFit` for every noise axis (see the module docstring)."""
    if not axes:
        return []
    first, rest = axes[0], axes[1:]
    sensor = first.name.startswith("observation_noise")
    real = replay.one_step(setting) ** 2  # (segments, dims)
    owners = np.array([e for e, _ in replay.starts(setting.obs_delay)])
    moment = float(real.mean())
    grid = np.linspace(0.0, REACH * max(first.axis.high, 1e-6), GRID)
    simulated = np.array(
        [
            float(
                (
                    replay.one_step(
                        setting, obs_noise=s if sensor else 0.0, act_noise=0.0 if sensor else s, seed=seed
                    )
                    ** 2
                ).mean()
            )
            if s > 0
            else 0.0
            for s in grid
        ]
    )
    value = _level(moment, grid, simulated)
    rng = np.random.default_rng([seed, 11])
    episodes = np.unique(owners)
    boot = []
    for _ in range(RESAMPLES):
        pick = rng.choice(episodes, size=len(episodes))
        rows = np.concatenate([np.flatnonzero(owners == e) for e in pick])
        boot.append(_level(float(real[rows].mean()), grid, simulated))
    std = float(np.std(boot))
    edge = value >= grid[-1] * 0.999
    note = "simulated moments of the one-step replay error"
    if edge:
        note += f"; at the edge of the levels tried ({grid[-1]:g}): the dynamics fit may be poor"
    fits = [AxisFit(first, value, std, not edge, note=note)]
    for axis in rest:
        fits.append(
            AxisFit(
                axis,
                (axis.axis.low + axis.axis.high) / 2,
                None,
                False,
                [first.name],
                f"one error spread cannot separate it from {first.name}",
            )
        )
    return fits
