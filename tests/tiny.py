"""Tiny budgets for end-to-end CLI runs in tests: a few hundred PPO steps on the quickstart task (and a
reference stage of 256 steps instead of 10x the budget)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

TINY = [
    "pretrain.timesteps=128",
    "finetune.timesteps=128",
    "evaluation.every_steps=64",
    "evaluation.episodes=1",
    "evaluation.final_episodes=1",
    "algo.kwargs.n_steps=64",
    "algo.kwargs.batch_size=32",
    "algo.kwargs.n_epochs=1",
    "algo.net_arch=[16]",
    "reference.timesteps=256",
]


def set_args(out: Path, *overrides: str, reference: bool | None = True) -> list[str]:
    """CLI options for a tiny CPU run writing under `out`; later overrides win over `TINY`.

    `reference`: True, a tiny reference stage; False, none (`reference=false`); None, the config's own."""
    args = ["--no-progress", "--device", "cpu", "--set", f"output_dir={out}"]
    tiny = [x for x in TINY if reference or not x.startswith("reference.")]
    for item in (*tiny, *(["reference=false"] if reference is False else []), *overrides):
        args += ["--set", item]
    return args


def robot_task(root: Path, name: str, mass_high: float = 2.0) -> Path:
    """A user's task file: the point mass with mass (log-uniform 0.5..`mass_high`), motor gain and a 0-2
    step delay randomized, its state read from the observation, and one target - an exclusive counting
    robot (`user_envs.CountingRobot`) locked through `root/<name>.lock`."""
    robot = {
        "env": "user_envs:CountingRobot",
        "exclusive": True,
        "env_kwargs": {"lock_path": str(root / f"{name}.lock")},
    }
    task: dict[str, Any] = {
        "name": name,
        "env": "user_envs:PointMass",
        "imports": ["user_envs"],
        "max_episode_steps": 30,
        "state_from_obs": "user_envs:set_point_state",
        "randomization": {
            "params": [
                {"param": "user_envs:MASS", "dist": "log_uniform", "low": 0.5, "high": mass_high},
                {"param": "user_envs:GAIN", "dist": "uniform", "low": 0.7, "high": 1.3},
            ]
        },
        "source_effects": [{"type": "action_delay", "steps": [0, 2]}],
        "targets": {"robot": robot},
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(task))
    return path
