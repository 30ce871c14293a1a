"""Task files: an env, its source randomization and its real-like targets, as YAML data.

A task is a YAML file (the packaged ones are `configs/tasks/<key>.yaml`, a user's is any path) or
the same mapping inline in an experiment config::

    name: MyArm                         # id stem (optional for a file: its stem, camel-cased)
    env: Hopper-v5                      # a registered Gymnasium id, "my_pkg.envs:Arm-v0", or
                                        # "my_pkg.robots:ArmEnv" (an env class or factory)
    env_kwargs: {}                      # constructor arguments
    max_episode_steps: 1000             # optional; the registered limit otherwise
    imports: [my_pkg.envs]              # imported first (they may register ids), in every worker
    randomization: {params: [...], resample_every_steps: null}   # physics varied in the source
    source_effects: [...]                                          # sensing/actuation varied in the source
    targets:
      latency:
        description: heavier pole, weaker motor, 2-step actuation latency
        env: null                       # another env instead of the task's (a real robot, another engine)
        env_kwargs: {}
        exclusive: false                # true for hardware: one instance at a time, target stages in turn
        physics: [{param: body_mass, names: [pole], value: 1.5}]   # fixed shift (dist: fixed)
        effects: [{type: action_delay, steps: 2}]                  # applied in order, first innermost
        extrapolation: false                                      # true: physics outside training range
        visuals: [{param: rgba, names: [cpole], value: 0.7}]       # pixel ids only: fixed visual shift
        image_noise_std: 2.0                                       # pixel ids only: camera noise, 0-255 units
    state_from_obs: my_pkg.robot:set_state  # optional: (env, obs) -> state, for calibration's replay
    pixels:                                 # optional: pixel ids `<Name>-Pixels[-Rand|-Target-<T>]-v0`
      image_size: 64                        # square frames, side in pixels
      image_size_kwargs: [width, height]    # the env's constructor arguments that set the frame size
      frame_stack: 3                        # frames stacked along the channel axis
      proprio: false                        # true: Dict {"image", "state"} observations
      proprio_dims: null                    # with proprio: the state dimensions kept (default: all)
      env_kwargs: {default_camera_config: {distance: 2.2}}   # extra constructor arguments when rendering
      randomization: {params: [...]}        # visual randomization of the source (`visuals`)
      image_noise_std: [0.0, 4.0]           # source camera noise, drawn per episode

`load_task` reads any of these forms into a validated `TaskSpec`; errors are one line naming the file
and the key path. Registering the task's ids is `simreal.simulation.registry`'s job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from simreal.schema import ConfigError, Spec, config_dir, load_yaml, offline, parse
from simreal.simulation.effects import EffectSpec, Scalar
from simreal.simulation.effects.params import Param
from simreal.simulation.randomization import ParamSpec, RandomizationSpec
from simreal.simulation.references import import_all, is_reference, load_attr, resolve_env
from simreal.simulation.visuals import VisualParamSpec, VisualRandomizationSpec

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _check_env(ref: str, kwargs: dict[str, Any], max_steps: int | None, optional_limit: bool) -> None:
    """`env:` names something that exists now (a target may take the task's time limit)."""
    try:
        resolve_env(ref, kwargs, max_steps if max_steps or not optional_limit else 1, "Check-v0", "env")
    except ConfigError as err:
        raise ValueError(str(err)) from None


class TargetSpec(Spec):
    """A real-like target: the task's env (or another one) with a fixed physics shift and an ordered list
    of effects (and, seen through a camera, a fixed visual shift and camera noise)."""

    description: str = ""
    """Free text, shown by `simreal envs`."""
    env: str | None = None
    """Another env instead of the task's (a robot driver, another engine), given as the task's `env` is."""
    env_kwargs: dict[str, Any] = {}
    """Constructor arguments of the target's own `env` (only with `env`)."""
    max_episode_steps: int | None = Field(default=None, ge=1)
    """Time limit of the target's own `env` in steps (only with `env`; None: the task's)."""
    exclusive: bool = False
    """One instance at a time (hardware): target stages run in turn, comparison stages only if asked."""
    physics: tuple[ParamSpec, ...] = ()
    """Physics set at every reset, entries as in `randomization.params` (default `dist: fixed`)."""
    effects: tuple[EffectSpec, ...] = ()
    """Real-like effects, applied in order (the first innermost, closest to the physics)."""
    extrapolation: bool = False
    """A label: this target's physics lies outside the source randomization's ranges."""
    visuals: tuple[VisualParamSpec, ...] = ()
    """Pixel ids only: the target's visual shift, entries as in `pixels.randomization.params`."""
    image_noise_std: float = Field(default=0.0, ge=0.0)
    """Pixel ids only: camera noise std per pixel and channel, in 0-255 units (0: none)."""

    @model_validator(mode="after")
    def _kwargs_need_env(self, info: ValidationInfo) -> TargetSpec:
        if self.env is None and (self.env_kwargs or self.max_episode_steps is not None):
            raise ValueError("env_kwargs: only with env: (a target of the task's own env takes its settings)")
        if self.env is not None and not offline(info.context):
            _check_env(self.env, self.env_kwargs, self.max_episode_steps, optional_limit=True)
        return self


class PixelSpec(Spec):
    """How a task's pixel ids observe: frame size and stacking, source visual randomization and noise."""

    image_size: int = Field(default=64, ge=1)
    """Side of the square frames, in pixels."""
    image_size_kwargs: tuple[str, ...] = ("width", "height")
    """The env's constructor arguments that set the frame size (each is given `image_size`)."""
    frame_stack: int = Field(default=3, ge=1)
    """Frames stacked along the channel axis (1: none)."""
    proprio: bool = False
    """Observe `{"image", "state"}`: the env's state vector beside the frames."""
    proprio_dims: tuple[int, ...] | None = None
    """With `proprio`: the dimensions of the env's state vector the "state" entry keeps (default: all) -
    a robot's joint encoders, say, without the goal position it must find in the image."""
    env_kwargs: dict[str, Any] = {}
    """Extra constructor arguments of the env when it renders (e.g. its camera)."""
    randomization: VisualRandomizationSpec = VisualRandomizationSpec()
    """Visual randomization of the source (colors, light, camera), drawn at every reset."""
    image_noise_std: Scalar = 0.0
    """Source camera noise std in 0-255 units: a number, or `[low, high]` drawn per episode."""

    @model_validator(mode="after")
    def _dims_need_proprio(self) -> PixelSpec:
        dims = self.proprio_dims
        if dims is None:
            return self
        if not self.proprio:
            raise ValueError("proprio_dims: only with proprio: true (the dimensions of the 'state' entry)")
        if not dims or min(dims) < 0 or len(set(dims)) != len(dims):
            raise ValueError(f"proprio_dims: need distinct indices >= 0 of the state, got {list(dims)}")
        return self

    @field_validator("image_noise_std", mode="before")
    @classmethod
    def _check_noise(cls, value: Any) -> Any:
        """A number or `[low, high]` pair, >= 0, in 0-255 pixel units."""
        return Param.of("image_noise_std", value, ge=0.0).as_value()


class TaskSpec(Spec):
    """A task: its env, the source randomization and its targets."""

    name: str
    """Stem of the task's Gymnasium ids (a file's default: its stem, camel-cased)."""
    description: str = ""
    """Free text, shown by `simreal envs`."""
    env: str
    """A registered Gymnasium id, `module:Id`, or `module:attr` naming an env class or factory."""
    env_kwargs: dict[str, Any] = {}
    """Constructor arguments of `env`."""
    max_episode_steps: int | None = Field(default=None, ge=1)
    """Episode time limit in steps (None: the registered one; required where there is none)."""
    imports: tuple[str, ...] = ()
    """Modules imported first, in every worker (they may register ids or define user classes)."""
    randomization: RandomizationSpec = RandomizationSpec()
    """Physics varied in the source sim (the randomized ids), drawn at every reset."""
    source_effects: tuple[EffectSpec, ...] = ()
    """Sensing and actuation effects of the source sim, in order (the first innermost)."""
    targets: dict[str, TargetSpec] = {}
    """The real-like targets by name (letters, digits and `_`: names stem ids)."""
    pixels: PixelSpec | None = None
    """How the task's pixel ids observe through a camera (None: the task has no pixel ids)."""
    state_from_obs: str | None = None
    """`module:attr` of a function `(env, obs) -> (qpos, qvel) | None` that puts the sim (`env.unwrapped`)
    in the state an observation shows - returning a MuJoCo env's joint state, or setting any env's state
    itself and returning None. Calibration replays recorded steps from it (None: whole episodes from
    reset)."""
    _source: str = PrivateAttr(default="<task>")

    @model_validator(mode="before")
    @classmethod
    def _imports_first(cls, data: Any, info: ValidationInfo) -> Any:
        """User modules are imported before anything in the task that may name them is checked."""
        if isinstance(data, Mapping) and not offline(info.context):
            modules = data.get("imports") or ()
            if isinstance(modules, list | tuple) and all(isinstance(m, str) for m in modules):
                try:
                    import_all(list(modules), "imports")
                except ConfigError as err:
                    raise ValueError(str(err)) from None
        return data

    @field_validator("state_from_obs")
    @classmethod
    def _state_setter(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or offline(info.context):
            return value
        if not is_reference(value):
            raise ValueError(f"{value!r} is not module:attr (allowed: module:attr naming a function)")
        try:
            fn = load_attr(value, "state_from_obs")
        except ConfigError as err:
            raise ValueError(str(err)) from None
        if not callable(fn):
            raise ValueError(f"{value} is a {type(fn).__name__}, not a function (env, obs) -> state")
        return value

    @field_validator("name")
    @classmethod
    def _id_stem(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"{value!r} cannot stem Gymnasium ids "
                "(allowed: letters, digits and _, starting with a letter)"
            )
        return value

    @field_validator("targets")
    @classmethod
    def _target_names(cls, value: dict[str, TargetSpec]) -> dict[str, TargetSpec]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"{name!r}: target names are letters, digits and _ (they stem ids)")
        return value

    @model_validator(mode="after")
    def _env_exists(self, info: ValidationInfo) -> TaskSpec:
        if not offline(info.context):
            _check_env(self.env, self.env_kwargs, self.max_episode_steps, optional_limit=False)
        return self

    @model_validator(mode="after")
    def _visuals_need_pixels(self) -> TaskSpec:
        for name, target in self.targets.items():
            if self.pixels is None and target.visuals:
                raise ValueError(f"targets.{name}.visuals: needs a `pixels:` section (allowed: add one)")
        return self

    @property
    def source(self) -> str:
        """Where the task came from (its file, or the experiment that holds it inline), for messages."""
        return self._source

    def target(self, name: str) -> TargetSpec:
        if name not in self.targets:
            raise ConfigError(
                f"{self.source}: targets.{name}: unknown target "
                f"(allowed: {', '.join(self.targets) or 'none'})"
            )
        return self.targets[name]


def camel(stem: str) -> str:
    """A file stem as an id stem: `my_arm` -> `MyArm`, `kuka-reach` -> `KukaReach`."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[_\-\s.]+", stem) if part)


def packaged_dir() -> Path:
    return config_dir() / "tasks"


def packaged_tasks() -> dict[str, Path]:
    """Packaged task key (file stem) -> its YAML file."""
    return {p.stem: p for p in sorted(packaged_dir().glob("*.yaml"))}


def task_file(ref: str, base_dir: Path | None = None, where: str = "task") -> Path:
    """The YAML file `ref` names: a packaged key, or a path (relative to `base_dir`, else the cwd)."""
    packaged = packaged_tasks()
    if ref in packaged:
        return packaged[ref]
    path = Path(ref).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"{where}: {path}: task file not found")
        return path
    raise ConfigError(
        f"{where}: unknown task {ref!r} (allowed: a packaged task - {', '.join(packaged)} - a path to a "
        "task YAML, or an inline mapping)"
    )


def load_task(
    ref: str | Path | Mapping[str, Any] | TaskSpec,
    base_dir: Path | None = None,
    where: str = "task",
    context: dict[str, Any] | None = None,
) -> TaskSpec:
    """A validated `TaskSpec` from a packaged key, a file path, a mapping or a spec.

    A file's name defaults to its stem, camel-cased; an inline mapping must give `name:`."""
    if isinstance(ref, TaskSpec):
        return ref
    if isinstance(ref, Mapping):
        if "name" not in ref:
            raise ConfigError(f"{where}.name: required for an inline task (it stems the task's ids)")
        spec = parse(TaskSpec, dict(ref), where, context)
        spec._source = where
        return spec
    path = task_file(str(ref), base_dir, where)
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    data.setdefault("name", camel(path.stem))
    spec = parse(TaskSpec, data, str(path), context)
    spec._source = str(path)
    return spec
