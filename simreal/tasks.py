"""Task presets: a task's source randomization and its real-like targets, read from YAML.

One file per task, `configs/tasks/<key>.yaml`::

    randomization: {params: [...], resample_every_steps: null}   # physics varied in the source
    source_effects: [...]                                          # sensing/actuation varied in the source
    targets:
      latency:
        description: heavier pole, weaker motor, 2-step actuation latency
        physics: [{param: body_mass, names: [pole], value: 1.5}]   # fixed shift (dist: fixed)
        effects: [{type: action_delay, steps: 2}]                  # applied in order, first innermost
        extrapolation: false                                      # true: physics outside training range
"""

from __future__ import annotations

from pathlib import Path

from simreal.config_base import ConfigError, Spec, config_dir, load_yaml, parse
from simreal.effects import EffectSpec
from simreal.randomization import ParamSpec, RandomizationSpec


class TargetSpec(Spec):
    """A real-like target: fixed physics shift plus an ordered list of effects."""

    description: str = ""
    physics: tuple[ParamSpec, ...] = ()
    effects: tuple[EffectSpec, ...] = ()
    extrapolation: bool = False


class TaskSpec(Spec):
    """A task's source randomization and its targets."""

    randomization: RandomizationSpec = RandomizationSpec()
    source_effects: tuple[EffectSpec, ...] = ()
    targets: dict[str, TargetSpec] = {}


def task_file(key: str) -> Path:
    """Path of the packaged YAML of task `key`."""
    return config_dir() / "tasks" / f"{key}.yaml"


def load_task(key: str) -> TaskSpec:
    """Load and validate task `key`'s YAML; errors name the file and the key path."""
    import envs

    if key not in envs.TASKS:
        raise ConfigError(f"task: unknown task {key!r} (allowed: {', '.join(envs.TASKS)})")
    path = task_file(key)
    return parse(TaskSpec, load_yaml(path), str(path))


def target_spec(key: str, target: str) -> TargetSpec:
    """The named target of task `key`."""
    spec = load_task(key)
    if target not in spec.targets:
        raise ConfigError(
            f"{task_file(key)}: targets.{target}: unknown target (allowed: {', '.join(spec.targets)})"
        )
    return spec.targets[target]
