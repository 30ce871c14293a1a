"""`simreal calibrate`: collect counted episodes with a policy - or read a team's log file - fit the task's
randomized physics and effects to them (`simreal.simulation.calibration`), and write what was found.

Writes into `out`: `episodes.npz` (a live run's recording, in the log format), `calibration.json`
(`parameters`: `{param, names, value, std, low, high, identified, ...}` per axis; `combinations` for
confounded axes; `dynamics_gap_before` / `dynamics_gap_after` on held-out episodes; `target_steps`;
`episodes`), `calibration.md` and `calibrated_task.yaml` (the task with its ranges brought to the
identified values, `--mode center` or `cover`). Every input is checked before the first target step.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

from simreal.schema import ConfigError
from simreal.simulation.accounting import TargetLedger
from simreal.simulation.calibration import calibrate, select_axes
from simreal.simulation.calibration.model import calibration_axes
from simreal.simulation.calibration.recording import load_log
from simreal.simulation.calibration.replay import SEGMENTS
from simreal.simulation.calibration.task import STDS, Mode
from simreal.simulation.registry import Task
from simreal.training.engine.artifacts import atomic_save_npz
from simreal.training.methods.calibrate.collect import check_excite, collect
from simreal.training.methods.calibrate.files import write_calibration


def run_calibration(
    task: Task,
    out: Path,
    *,
    target: str | None = None,
    policy: Path | None = None,
    log: Path | None = None,
    episodes: int = 10,
    excite: float = 0.0,
    mode: Mode = "cover",
    params: list[str] | None = None,
    seed: int = 0,
    device: torch.device | None = None,
    env_kwargs: dict[str, Any] | None = None,
    workers: int = 0,
    segments: int = SEGMENTS,
    stds: float = STDS,
) -> dict[str, Any]:
    """Collect (or read) the episodes, fit, write the files; returns calibration.json's data."""
    select_axes(calibration_axes(task.spec), params, "--params")
    if segments < 8:
        raise ConfigError(f"--segments: must be >= 8, got {segments}")
    if not stds > 0:
        raise ConfigError(f"--stds: must be > 0, got {stds}")
    ledger = TargetLedger(purpose="other")
    started = time.perf_counter()
    returns: list[float] = []
    if log is not None:
        if policy is not None or target is not None:
            raise ConfigError("--from-log: calibrates from the file alone (allowed: no POLICY, no --target)")
        recording = load_log(log)
        source: dict[str, Any] = {"log": str(log)}
    else:
        if policy is None or target is None:
            raise ConfigError("calibrate: give POLICY and --target (or --from-log FILE)")
        if episodes < 1:
            raise ConfigError(f"--episodes: must be >= 1, got {episodes}")
        if not policy.is_file():
            raise ConfigError(f"{policy}: file not found (allowed: a policy.pt)")
        task.spec.target(target)
        probe = gym.make(task.nominal_id)
        try:
            check_excite(excite, probe.action_space, "--excite")
        finally:
            probe.close()
        recording, returns = collect(
            policy,
            task.target_id(target),
            episodes,
            excite,
            seed,
            device or torch.device("cpu"),
            ledger,
            env_kwargs,
        )
        out.mkdir(parents=True, exist_ok=True)
        atomic_save_npz(recording.arrays(), out / "episodes.npz")
        source = {"policy": str(policy), "target": task.target_id(target), "excite": excite}
    collected = time.perf_counter() - started
    result = calibrate(
        task, recording, mode=mode, params=params, seed=seed, workers=workers, segments=segments, stds=stds
    )
    summary = {
        **source,
        **result.summary,
        "target_steps": ledger.as_dict(),
        "episode_returns": returns,
        "collect_seconds": round(collected, 2),
    }
    write_calibration(out, summary, result.task)
    return summary
