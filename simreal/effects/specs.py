"""Typed specs for the effects, so a real-like target is data: an ordered list in YAML.

Every spec has a `type` tag naming the effect, fields named like the wrapper's arguments, and
`.wrap(env)`. Values are numbers (fixed) or `[low, high]` pairs (drawn per episode)::

    effects:
      - {type: action_noise, std: 0.1}
      - {type: action_delay, steps: [1, 3]}
      - {type: observation_noise, std: 0.05, bias_std: 0.02}

`apply_effects` wraps in list order: the first spec is the innermost wrapper (closest to physics).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from simreal.config_base import ConfigError, Spec, parse
from simreal.effects.action import ActionDelay, ActionNoise, ActuatorDeadZone, ActuatorSaturation
from simreal.effects.base import BoxEnv
from simreal.effects.observation import (
    DroppedObservation,
    ObservationDelay,
    ObservationNoise,
    StuckObservation,
)
from simreal.effects.params import RULES, IntScalar, Scalar, param
from simreal.effects.timing import ControlJitter


class _EffectSpec(Spec):
    """Shared validation: every parameter field is checked against `RULES` before typing."""

    wrapper: ClassVar[Callable[..., BoxEnv]]

    @model_validator(mode="before")
    @classmethod
    def _unknown_keys_first(cls, data: Any) -> Any:
        """Report a misspelt key before the 'field required' error it usually causes."""
        if isinstance(data, Mapping):
            unknown = sorted(str(key) for key in data if key not in cls.model_fields)
            if unknown:
                raise ValueError(f"{unknown[0]}: unknown key (allowed: {', '.join(cls.model_fields)})")
        return data

    @field_validator(*RULES, mode="before", check_fields=False)
    @classmethod
    def _check_param(cls, value: Any, info: ValidationInfo) -> Any:
        assert info.field_name is not None
        return param(info.field_name, value).as_value()

    def wrap(self, env: BoxEnv) -> BoxEnv:
        """`env` wrapped in this effect, with the spec's fields as constructor arguments."""
        return self.wrapper(env, **self.model_dump(exclude={"type"}))


class ObservationNoiseSpec(_EffectSpec):
    """See `ObservationNoise`."""

    wrapper = ObservationNoise
    type: Literal["observation_noise"] = "observation_noise"
    std: Scalar
    bias_std: Scalar = 0.0


class ActionNoiseSpec(_EffectSpec):
    """See `ActionNoise`."""

    wrapper = ActionNoise
    type: Literal["action_noise"] = "action_noise"
    std: Scalar


class ActionDelaySpec(_EffectSpec):
    """See `ActionDelay`."""

    wrapper = ActionDelay
    type: Literal["action_delay"] = "action_delay"
    steps: IntScalar


class ObservationDelaySpec(_EffectSpec):
    """See `ObservationDelay`."""

    wrapper = ObservationDelay
    type: Literal["observation_delay"] = "observation_delay"
    steps: IntScalar


class DroppedObservationSpec(_EffectSpec):
    """See `DroppedObservation`."""

    wrapper = DroppedObservation
    type: Literal["dropped_observation"] = "dropped_observation"
    prob: Scalar


class StuckObservationSpec(_EffectSpec):
    """See `StuckObservation`."""

    wrapper = StuckObservation
    type: Literal["stuck_observation"] = "stuck_observation"
    prob: Scalar


class ActuatorDeadZoneSpec(_EffectSpec):
    """See `ActuatorDeadZone`."""

    wrapper = ActuatorDeadZone
    type: Literal["actuator_dead_zone"] = "actuator_dead_zone"
    threshold: Scalar


class ActuatorSaturationSpec(_EffectSpec):
    """See `ActuatorSaturation`."""

    wrapper = ActuatorSaturation
    type: Literal["actuator_saturation"] = "actuator_saturation"
    limit: Scalar


class ControlJitterSpec(_EffectSpec):
    """See `ControlJitter`."""

    wrapper = ControlJitter
    type: Literal["control_jitter"] = "control_jitter"
    max_extra_steps: IntScalar
    prob: Scalar


EffectSpec = Annotated[
    ObservationNoiseSpec
    | ActionNoiseSpec
    | ActionDelaySpec
    | ObservationDelaySpec
    | DroppedObservationSpec
    | StuckObservationSpec
    | ActuatorDeadZoneSpec
    | ActuatorSaturationSpec
    | ControlJitterSpec,
    Field(discriminator="type"),
]
"""Any one effect spec, chosen by its `type` field (use as `list[EffectSpec]` in config models)."""

EFFECTS: dict[str, type[_EffectSpec]] = {
    "observation_noise": ObservationNoiseSpec,
    "action_noise": ActionNoiseSpec,
    "action_delay": ActionDelaySpec,
    "observation_delay": ObservationDelaySpec,
    "dropped_observation": DroppedObservationSpec,
    "stuck_observation": StuckObservationSpec,
    "actuator_dead_zone": ActuatorDeadZoneSpec,
    "actuator_saturation": ActuatorSaturationSpec,
    "control_jitter": ControlJitterSpec,
}
"""Effect type name -> spec class."""


def apply_effects(env: BoxEnv, specs: Sequence[EffectSpec]) -> BoxEnv:
    """Wrap `env` in each effect in list order: `specs[0]` ends up innermost (closest to physics)."""
    for spec in specs:
        env = spec.wrap(env)
    return env


def parse_effects(data: Any, source: str) -> list[EffectSpec]:
    """Validate a YAML list of effect mappings; errors are one-line ConfigErrors naming the item and key.

    Example message: `target.yaml: effects.1: prob: prob must be in [0, 1], got 1.5`.
    """
    if not isinstance(data, list):
        raise ConfigError(f"{source}: effects: must be a list of effect mappings, got {type(data).__name__}")
    allowed = ", ".join(EFFECTS)
    specs: list[EffectSpec] = []
    for i, item in enumerate(data):
        where = f"effects.{i}"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{source}: {where}: must be a mapping with a type, got {type(item).__name__}")
        kind = item.get("type")
        if kind not in EFFECTS:
            what = "missing" if kind is None else f"unknown effect {kind!r}"
            raise ConfigError(f"{source}: {where}.type: {what} (allowed: {allowed})")
        model = EFFECTS[kind]
        unknown = sorted(str(key) for key in item if key not in model.model_fields)
        if unknown:
            keys = ", ".join(model.model_fields)
            raise ConfigError(f"{source}: {where}.{unknown[0]}: unknown key (allowed: {keys})")
        specs.append(parse(model, item, f"{source}: {where}"))  # type: ignore[arg-type]
    return specs
