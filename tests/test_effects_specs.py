"""Effect specs: registry, validation messages, YAML parsing, composition order, presets."""

from __future__ import annotations

import inspect
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import yaml
from fakes import CounterEnv
from pydantic import TypeAdapter, ValidationError

from simreal.schema import ConfigError, Spec, parse
from simreal.simulation.effects import (
    EFFECTS,
    PRESETS,
    ActionDelay,
    ActuatorSaturation,
    DroppedObservation,
    EffectSpec,
    ObservationNoise,
    apply_effects,
    parse_effects,
    preset_effects,
)

ONE: TypeAdapter[EffectSpec] = TypeAdapter(EffectSpec)


class Target(Spec):
    """How another config would embed effects."""

    effects: list[EffectSpec] = []


def test_registry_names_match_record_names_and_constructor_arguments() -> None:
    assert set(EFFECTS) == {
        "observation_noise",
        "action_noise",
        "action_delay",
        "observation_delay",
        "dropped_observation",
        "stuck_observation",
        "actuator_dead_zone",
        "actuator_saturation",
        "control_jitter",
    }
    for name, wrapper in EFFECTS.items():
        assert wrapper.record_name() == name
        wrapper_args = list(inspect.signature(wrapper).parameters)[1:]  # drop `env`
        assert wrapper_args == list(wrapper.params)  # every argument declared with its rule


def test_yaml_list_builds_wrappers_in_order_first_is_innermost() -> None:
    data = yaml.safe_load(
        """
        effects:
          - {type: action_delay, steps: [1, 3]}
          - {type: actuator_saturation, limit: 0.5}
          - {type: observation_noise, std: 0.1, bias_std: 0.02}
        """
    )
    target = parse(Target, data, "target.yaml")
    assert target.effects == parse_effects(data["effects"], "target.yaml")
    env = apply_effects(CounterEnv(), target.effects)
    layers = []
    while isinstance(env, gym.Wrapper):
        layers.append(env)
        env = env.env
    assert [type(layer) for layer in layers] == [ObservationNoise, ActuatorSaturation, ActionDelay]
    assert isinstance(env, CounterEnv)
    delay = layers[-1]
    assert isinstance(delay, ActionDelay) and delay.steps.as_value() == (1, 3)


def test_order_changes_the_result() -> None:
    """Noise inside a dropped packet is lost; noise outside it is added to the zeros."""
    noise = {"type": "observation_noise", "std": 0.0, "bias_std": 1.0}
    drop = {"type": "dropped_observation", "prob": 1.0}
    noise_then_drop = apply_effects(CounterEnv(), parse_effects([noise, drop], "t"))
    drop_then_noise = apply_effects(CounterEnv(), parse_effects([drop, noise], "t"))
    noise_then_drop.reset(seed=0)
    drop_then_noise.reset(seed=0)
    action = np.zeros(2, dtype=np.float32)
    assert np.all(noise_then_drop.step(action)[0] == 0.0)
    assert np.all(drop_then_noise.step(action)[0] != 0.0)
    assert isinstance(drop_then_noise, ObservationNoise)
    assert isinstance(drop_then_noise.unwrapped, CounterEnv)
    assert not isinstance(drop_then_noise, DroppedObservation)


@pytest.mark.parametrize(
    ("item", "field", "message"),
    [
        ({"type": "laser_noise", "std": 0.1}, "type", "laser_noise"),
        ({"type": "observation_noise", "std": -0.1}, "std", "std must be >= 0, got -0.1"),
        ({"type": "observation_noise", "std": 0.1, "bias_std": -1}, "bias_std", "bias_std must be >= 0"),
        ({"type": "dropped_observation", "prob": 1.5}, "prob", "prob must be in [0, 1], got 1.5"),
        ({"type": "stuck_observation", "prob": [0.6, 0.2]}, "prob", "prob range needs low <= high"),
        ({"type": "action_delay", "steps": [3, 1]}, "steps", "steps range needs low <= high"),
        ({"type": "action_delay", "steps": -2}, "steps", "steps must be >= 0"),
        ({"type": "actuator_saturation", "limit": 0}, "limit", "limit must be in (0, 1]"),
        ({"type": "actuator_dead_zone", "threshold": 1}, "threshold", "threshold must be in [0, 1)"),
        ({"type": "control_jitter", "max_extra_steps": 2.5, "prob": 0.1}, "max_extra_steps", "integer"),
        ({"type": "action_noise", "std": [0.1, 0.2, 0.3]}, "std", "[low, high] pair"),
        ({"type": "action_noise", "std": "0.1"}, "std", "must be a number"),
        ({"type": "action_noise", "stdd": 0.1}, "stdd", "unknown key"),
    ],
)
def test_invalid_specs_fail_with_one_line_naming_the_field(
    item: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(ValidationError) as validation:
        ONE.validate_python(item)
    assert field in str(validation.value)

    with pytest.raises(ConfigError) as config:
        parse(Target, {"effects": [item]}, "target.yaml")
    text = str(config.value)
    assert "\n" not in text and text.startswith("target.yaml: effects.0")
    assert field in text

    with pytest.raises(ConfigError) as config:
        parse_effects([{"type": "action_noise", "std": 0.1}, item], "target.yaml")
    text = str(config.value)
    assert "\n" not in text and text.startswith("target.yaml: effects.1")
    assert field in text and message in text


def test_parse_effects_rejects_non_lists_and_missing_types() -> None:
    with pytest.raises(ConfigError, match="effects: must be a list"):
        parse_effects({"type": "action_noise"}, "t.yaml")
    with pytest.raises(ConfigError, match=r"effects.0.type: missing \(allowed: observation_noise, "):
        parse_effects([{"std": 0.1}], "t.yaml")


def test_specs_are_frozen_and_ranges_become_tuples() -> None:
    spec = ONE.validate_python({"type": "control_jitter", "max_extra_steps": [1, 2], "prob": 0.5})
    assert spec.type == "control_jitter" and spec.wrapper is EFFECTS["control_jitter"]
    assert spec.args["max_extra_steps"] == (1, 2) and isinstance(spec.args["max_extra_steps"][0], int)
    assert spec.model_dump() == {"type": "control_jitter", "max_extra_steps": (1, 2), "prob": 0.5}
    with pytest.raises(ValidationError):
        spec.type = "action_noise"


def test_presets_follow_realworldrl_suite() -> None:
    def values(name: str) -> dict[str, Any]:
        return {spec.type: spec.args for spec in preset_effects(name)}

    easy, hard = values("easy"), values("hard")
    assert easy["action_delay"] == easy["observation_delay"] == {"steps": 3}
    assert hard["action_delay"] == hard["observation_delay"] == {"steps": 9}
    assert easy["action_noise"]["std"] == easy["observation_noise"]["std"] == 0.1
    assert hard["action_noise"]["std"] == hard["observation_noise"]["std"] == 1.0
    assert easy["dropped_observation"] == easy["stuck_observation"] == {"prob": 0.01}
    assert hard["dropped_observation"] == hard["stuck_observation"] == {"prob": 0.1}
    assert set(PRESETS) >= {"easy", "hard"}


def test_unknown_preset_is_a_clear_error() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown effects preset 'extreme' \(allowed: easy, medium, hard\)"
    ):
        preset_effects("extreme")
