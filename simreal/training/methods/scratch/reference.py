"""Where a reference stage lives: one directory per everything that determines its result, shared by runs.

A reference stage (scratch on the target for `reference.timesteps`) costs ten fine-tuning budgets, and
its result depends only on the target, what the policy observes, the algorithm and the evaluation - not
on the source randomization or the fine-tuning settings. So it is trained once under
`<output_dir>/references/<Task>-<target>-<key>/seed<N>/` and reused by every later run whose key
matches; `reference.json` there says what the key covers, and each run's report names the directory.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from simreal.config import ExperimentConfig
from simreal.training.engine.artifacts import atomic_write_text


def reference_settings(cfg: ExperimentConfig) -> dict[str, Any]:
    """Everything the reference stage's result depends on, as plain data."""
    task = cfg.task.model_dump(mode="json")
    return {
        "version": 1,
        "task": {k: task[k] for k in ("name", "env", "env_kwargs", "max_episode_steps", "imports", "pixels")},
        "target": cfg.target,
        "target_spec": task["targets"][cfg.target],
        "observation": cfg.observation.model_dump(mode="json"),
        "pixels": cfg.pixels,
        "perception": cfg.perception.model_dump(mode="json") if cfg.perception else None,
        # where source envs step does not change a target-trained result; the target's env count does
        "algo": {**cfg.algo.model_dump(mode="json", exclude={"vec_env"}), "n_envs": cfg.target_n_envs},
        "timesteps": cfg.reference_steps,
        "every_steps": cfg.reference_every,
        "evaluation": {k: getattr(cfg.evaluation, k) for k in ("every_steps", "episodes", "final_episodes")},
    }


def reference_key(cfg: ExperimentConfig) -> str:
    text = json.dumps(reference_settings(cfg), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def reference_dir(cfg: ExperimentConfig) -> Path:
    """The shared directory of this config's reference stage (its `reference.json` written once)."""
    path = Path(cfg.output_dir) / "references" / f"{cfg.task.name}-{cfg.target}-{reference_key(cfg)}"
    description = path / "reference.json"
    if not description.exists():
        atomic_write_text(json.dumps(reference_settings(cfg), indent=1), description)
    return path
