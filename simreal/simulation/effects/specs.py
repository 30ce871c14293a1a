"""Effects as data: the registry of built-in effects, user effects by `module:Class`, and `EffectSpec`.

A real-like target is an ordered list of effects in YAML. Each item names its `type` - a built-in
effect (`EFFECTS`) or a user's `gymnasium.Wrapper` subclass as `module:Class` - and the wrapper's
constructor arguments::

    effects:
      - {type: action_noise, std: 0.1}
      - {type: action_delay, steps: [1, 3]}                   # [low, high]: drawn per episode
      - {type: my_pkg.effects:GripperSlip, prob: [0.0, 0.1]}  # a user's Effect subclass

Arguments are checked when the YAML is read: unknown and missing keys against the constructor's
signature, numbers and ranges against the effect's declared `Rule`s (built-in and user `Effect`
subclasses alike). A plain `gymnasium.Wrapper` subclass takes its arguments as given (fixed values;
per-episode ranges need the `Effect` base, which draws and records them).

`apply_effects` wraps in list order: the first item is the innermost wrapper (closest to physics).
"""

from __future__ import annotations

import builtins
import inspect
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import gymnasium as gym
from pydantic import ValidationInfo, model_serializer, model_validator

from simreal.schema import ConfigError, Spec, offline, parse
from simreal.simulation.effects.action import ActionDelay, ActionNoise, ActuatorDeadZone, ActuatorSaturation
from simreal.simulation.effects.base import BoxEnv, Effect
from simreal.simulation.effects.observation import (
    DroppedObservation,
    ObservationDelay,
    ObservationNoise,
    StuckObservation,
)
from simreal.simulation.effects.timing import ControlJitter
from simreal.simulation.references import is_reference, load_attr

EFFECTS: dict[str, type[Effect]] = {
    cls.name: cls
    for cls in (
        ObservationNoise,
        ActionNoise,
        ActionDelay,
        ObservationDelay,
        DroppedObservation,
        StuckObservation,
        ActuatorDeadZone,
        ActuatorSaturation,
        ControlJitter,
    )
}
"""Built-in effect name -> wrapper class (a new built-in is one class and one entry here)."""

SENSOR_EFFECTS = frozenset(
    {"observation_noise", "observation_delay", "dropped_observation", "stuck_observation"}
)
"""Built-in effects that only change the state observation (what a camera-only policy never sees)."""


@cache
def effect_class(kind: str) -> type[gym.Wrapper[Any, Any, Any, Any]]:
    """The wrapper class of effect `kind` (a built-in name or `module:Class`); ValueError otherwise."""
    if kind in EFFECTS:
        return EFFECTS[kind]
    if not is_reference(kind):
        raise ValueError(
            f"type: unknown effect {kind!r} (allowed: {', '.join(EFFECTS)}, or module:Class naming a "
            "gymnasium.Wrapper subclass)"
        )
    try:
        cls = load_attr(kind, "type")
    except ConfigError as err:
        raise ValueError(str(err)) from None
    if not (isinstance(cls, type) and issubclass(cls, gym.Wrapper)):
        raise ValueError(
            f"type: {kind} is a {type(cls).__name__}, not a gymnasium.Wrapper subclass "
            "(allowed: a wrapper class, e.g. a subclass of simreal.simulation.effects.ActionEffect)"
        )
    return cls


def _check_args(cls: type[gym.Wrapper[Any, Any, Any, Any]], args: Mapping[str, Any]) -> dict[str, Any]:
    """`args` checked against `cls`'s constructor and declared rules; ranges canonical as tuples."""
    signature = inspect.signature(cls.__init__)
    params = [p for name, p in signature.parameters.items() if name not in ("self", "env")]
    named = {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    open_kwargs = any(p.kind is p.VAR_KEYWORD for p in params)
    for key in args:
        if key not in named and not open_kwargs:
            raise ValueError(f"{key}: unknown key (allowed: type, {', '.join(sorted(named))})")
    for p in params:
        if p.name in named and p.default is p.empty and p.name not in args:
            raise ValueError(
                f"{p.name}: required by {cls.__name__} (its arguments: {', '.join(sorted(named))})"
            )
    rules = cls.params if issubclass(cls, Effect) else {}
    out = dict(args)
    for key, value in args.items():
        if key in rules:
            out[key] = rules[key].check(key, value).as_value()
    return out


class EffectSpec(Spec):
    """One effect: its `type` and validated constructor arguments. YAML is flat: `{type: ..., <arg>: ...}`."""

    type: str
    """A built-in effect name, or `module:Class` naming a `gymnasium.Wrapper` subclass."""
    args: dict[str, Any] = {}
    """Its constructor arguments, given flat beside `type` in YAML and checked against the class."""

    @model_validator(mode="before")
    @classmethod
    def _structure(cls, data: Any, info: ValidationInfo) -> Any:
        """Flat YAML -> `{type, args}`, with the arguments checked against the effect's class."""
        if not isinstance(data, Mapping):
            raise ValueError(f"an effect is a mapping with a type, got {type(data).__name__}")
        if set(data) == {"type", "args"} and isinstance(data["args"], Mapping):
            kind, args = data["type"], data["args"]
        elif "type" not in data:
            raise ValueError(f"type: missing (allowed: {', '.join(EFFECTS)}, or module:Class)")
        else:
            kind, args = data["type"], {k: v for k, v in data.items() if k != "type"}
        if not isinstance(kind, str):
            raise ValueError(f"type: must be a string, got {kind!r}")
        if offline(info.context):
            return {"type": kind, "args": dict(args)}
        return {"type": kind, "args": _check_args(effect_class(kind), args)}

    @model_serializer
    def _flat(self) -> dict[str, Any]:
        return {"type": self.type, **self.args}

    @property
    def wrapper(self) -> builtins.type[gym.Wrapper[Any, Any, Any, Any]]:
        return effect_class(self.type)

    def wrap(self, env: BoxEnv) -> gym.Env[Any, Any]:
        """`env` wrapped in this effect, with the spec's arguments as constructor arguments."""
        return self.wrapper(env, **self.args)


def apply_effects(env: gym.Env[Any, Any], specs: Sequence[EffectSpec]) -> gym.Env[Any, Any]:
    """Wrap `env` in each effect in list order: `specs[0]` ends up innermost (closest to physics)."""
    for spec in specs:
        env = spec.wrap(env)
    return env


def parse_effects(data: Any, source: str) -> list[EffectSpec]:
    """Validate a YAML list of effect mappings; errors are one-line ConfigErrors naming the item and key.

    Example message: `target.yaml: effects.1: prob must be in [0, 1], got 1.5`.
    """
    if not isinstance(data, list):
        raise ConfigError(f"{source}: effects: must be a list of effect mappings, got {type(data).__name__}")
    return list(parse(_Effects, {"effects": data}, source).effects)


class _Effects(Spec):
    effects: tuple[EffectSpec, ...]
