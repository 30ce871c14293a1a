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
        visuals: [{param: rgba, names: [cpole], value: 0.7}]       # pixel ids only: fixed visual shift
        image_noise_std: 2.0                                       # pixel ids only: camera noise, 0-255 units
    pixels:                                 # optional: pixel ids `<Name>-Pixels[-Rand|-Target-<T>]-v0`
      image_size: 64                        # square frames, side in pixels
      frame_stack: 3                        # frames stacked along the channel axis
      proprio: false                        # true: Dict {"image", "state"} observations
      env_kwargs: {default_camera_config: {distance: 2.2}}   # extra constructor arguments when rendering
      randomization: {params: [...]}        # visual randomization of the source (`simreal.visuals`)
      image_noise_std: [0.0, 4.0]           # source camera noise, drawn per episode
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from simreal.config_base import ConfigError, Spec, config_dir, load_yaml, parse
from simreal.effects import EffectSpec, Scalar
from simreal.effects.params import Param
from simreal.randomization import ParamSpec, RandomizationSpec
from simreal.visuals import VisualParamSpec, VisualRandomizationSpec


class TargetSpec(Spec):
    """A real-like target: fixed physics shift plus an ordered list of effects (and, seen through a camera,
    a fixed visual shift and camera noise)."""

    description: str = ""
    physics: tuple[ParamSpec, ...] = ()
    effects: tuple[EffectSpec, ...] = ()
    extrapolation: bool = False
    visuals: tuple[VisualParamSpec, ...] = ()
    image_noise_std: float = Field(default=0.0, ge=0.0)


class PixelSpec(Spec):
    """How a task's pixel ids observe: frame size and stacking, source visual randomization and noise."""

    image_size: int = Field(default=64, ge=1)
    frame_stack: int = Field(default=3, ge=1)
    proprio: bool = False
    env_kwargs: dict[str, Any] = {}
    randomization: VisualRandomizationSpec = VisualRandomizationSpec()
    image_noise_std: Scalar = 0.0

    @field_validator("image_noise_std", mode="before")
    @classmethod
    def _check_noise(cls, value: Any) -> Any:
        """A number or `[low, high]` pair, >= 0, in 0-255 pixel units."""
        return Param.of("image_noise_std", value, ge=0.0).as_value()


class TaskSpec(Spec):
    """A task's source randomization and its targets."""

    randomization: RandomizationSpec = RandomizationSpec()
    source_effects: tuple[EffectSpec, ...] = ()
    targets: dict[str, TargetSpec] = {}
    pixels: PixelSpec | None = None

    @model_validator(mode="after")
    def _visuals_need_pixels(self) -> TaskSpec:
        for name, target in self.targets.items():
            if self.pixels is None and target.visuals:
                raise ValueError(f"targets.{name}.visuals: needs a `pixels:` section (allowed: add one)")
        return self


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
