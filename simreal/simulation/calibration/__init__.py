"""Calibration (real-to-sim): fit a task's randomized physics and effects to recorded target episodes, say
what the data can and cannot tell apart, and write the task with its ranges brought to what was measured.

The pieces, in the order `calibrate` uses them: `recording` (the episodes, live or from a log file),
`model` (the axes and the sim held open for replay), `replay` (the error of a candidate), `fit` (CMA-ES,
enumeration), `identify` (what the data can and cannot tell apart), `noise` (simulated moments), `gap`
(the dynamics gap before and after, on held-out episodes), `task` (the calibrated task file).
Collecting episodes with a policy on a counted target is the training layer's
(`simreal.training.methods.calibrate`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from simreal.schema import ConfigError
from simreal.simulation.calibration.fit import fit, workers_available
from simreal.simulation.calibration.gap import dynamics_gap
from simreal.simulation.calibration.identify import AxisFit
from simreal.simulation.calibration.model import CalAxis, Sim, calibration_axes
from simreal.simulation.calibration.noise import fit_noise
from simreal.simulation.calibration.recording import Episode, Recording, check_dims
from simreal.simulation.calibration.replay import SEGMENTS, Replay
from simreal.simulation.calibration.task import STDS, Mode, calibrated_range, calibrated_task
from simreal.simulation.registry import Task
from simreal.simulation.tasks import load_task

__all__ = ["Calibration", "calibrate", "select_axes", "split"]


@dataclass
class Calibration:
    """A calibration's result: `summary` (calibration.json's data), the calibrated task's data and the
    per-axis fits (from which `task.calibrated_task` writes either mode)."""

    summary: dict[str, Any]
    task: dict[str, Any]
    fits: list[AxisFit]


def select_axes(axes: list[CalAxis], names: list[str] | None, where: str) -> list[CalAxis]:
    """The axes named (all where `names` is None); a name the task does not randomize is one line."""
    if names is None:
        return axes
    known = {a.name: a for a in axes}
    for name in names:
        if name not in known:
            raise ConfigError(
                f"{where}: {name!r} is not a parameter the task randomizes "
                f"(allowed: {', '.join(known) or 'none'})"
            )
    return [known[n] for n in names]


def split(recording: Recording) -> tuple[tuple[Episode, ...], tuple[Episode, ...]]:
    """Episodes to fit and held-out episodes for the gap: every fourth (the fourth, eighth, ...) from four
    episodes on, the last of two or three; with one episode, that one for both."""
    eps = recording.episodes
    if len(eps) == 1:
        return eps, eps
    if len(eps) < 4:
        return eps[:-1], eps[-1:]
    held = tuple(e for i, e in enumerate(eps) if i % 4 == 3)
    return tuple(e for i, e in enumerate(eps) if i % 4 != 3), held


def label(row: dict[str, Any]) -> str:
    """A `parameters` row's display name: `param` or `param/names`."""
    return str(row["param"]) + (f"/{','.join(row['names'])}" if row["names"] else "")


def _row(f: AxisFit, mode: Mode, stds: float) -> dict[str, Any]:
    axis = f.axis
    if axis.source == "physics":
        param, names = (
            axis.name.split("/")[0],
            (axis.name.split("/")[1].split(",") if "/" in axis.name else None),
        )
    else:
        param, names = axis.name, None
    low, high = calibrated_range(f, mode, stds)
    return {
        "param": param,
        "names": names,
        "value": f.value,
        "std": f.std,
        "low": low,
        "high": high,
        "identified": f.identified,
        "kind": axis.kind,
        "range_before": [axis.axis.low, axis.axis.high],
        "confounded_with": f.confounded_with,
        "at_edge": f.at_edge,
        "note": f.note or axis.why,
    }


def calibrate(
    task: Task,
    recording: Recording,
    *,
    mode: Mode = "cover",
    params: list[str] | None = None,
    seed: int = 0,
    where: str = "calibrate",
    segments: int = SEGMENTS,
    stds: float = STDS,
    name: str | None = None,
    workers: int = 0,
) -> Calibration:
    """Fit `task`'s axes (or those named in `params`) to `recording`, replaying up to `segments` segments
    of it per candidate; the calibrated task (named `name`, default `<Task>Calibrated`) holds each value
    +- `stds` standard deviations; `workers` processes share the fit (0: one per core; the same result
    for any number). See the package docstring."""
    started = time.perf_counter()
    spec = task.spec
    axes = select_axes(calibration_axes(spec), params, f"{where}: params")
    if not axes:
        raise ConfigError(f"{spec.source}: the task randomizes nothing calibration could fit")
    sim = Sim(task)
    try:
        check_dims(recording, sim.obs_dim, sim.act_dim, where)
        if sim.setter is not None:
            sim.set_state(recording.episodes[0].obs[0])  # a wrong shape: one line before any fitting
        fit_eps, held = split(recording)
        replay = Replay(sim, Recording(fit_eps), axes, seed, segments=segments)
        noisy = [a for a in axes if a.kind == "noise"]
        sensor = [a for a in noisy if a.name == "observation_noise.std"][:1]
        level = None
        if sensor and not replay.from_reset and noisy[0] is sensor[0]:
            level = lambda setting: fit_noise(replay, setting, sensor, seed)[0].value  # noqa: E731
        result = fit(replay, seed, level, workers_available(workers))
        if replay.from_reset:  # the one-step errors need recorded states to start from
            why = "needs the task's state_from_obs (replay from recorded states)"
            noise = [AxisFit(a, (a.axis.low + a.axis.high) / 2, None, False, note=why) for a in noisy]
        else:
            noise = fit_noise(replay, result.setting, noisy, seed)
        unseen = [
            AxisFit(a, (a.axis.low + a.axis.high) / 2, None, False, note=a.why)
            for a in axes
            if a.kind == "none"
        ]
        fits = [*result.axes, *noise, *unseen]
        order = {a.name: i for i, a in enumerate(axes)}
        fits.sort(key=lambda f: order[f.axis.name])
        described = (
            f"calibrated ({mode}) from {recording.steps} recorded steps in {len(recording.episodes)} episodes"
        )
        data = calibrated_task(spec, fits, mode, described, stds, name)
        calibrated = load_task(data, where=f"{where}: calibrated task")
        gap_before = dynamics_gap(sim, spec, held, seed)
        gap_after = dynamics_gap(sim, calibrated, held, seed)
    finally:
        sim.close()
    summary = {
        "task": spec.source,
        "mode": mode,
        "stds": stds,
        "replay": "episodes_from_reset" if replay.from_reset else "states",
        "segments": len(replay.starts(result.setting.obs_delay)),  # replayed per candidate (at most asked)
        "episodes": len(recording.episodes),
        "steps": recording.steps,
        "held_out_episodes": len(held) if held is not fit_eps else 0,
        "parameters": [_row(f, mode, stds) for f in fits],
        "combinations": result.combinations,
        "discrete_votes": result.discrete_votes,
        "replay_error": {"at_range_middles": result.loss_before, "fitted": result.loss_after},
        "noise_corrected_with": result.noise_corrected,
        "dynamics_gap_before": gap_before["score"],
        "dynamics_gap_after": gap_after["score"],
        "dynamics_gap": {"before": gap_before, "after": gap_after},
        "evaluations": result.evaluations,
        "fit_seconds": round(time.perf_counter() - started, 2),
        "seed": seed,
    }
    return Calibration(summary, data, fits)
