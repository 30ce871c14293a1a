"""realworldrl_suite's combined challenges as effect lists (data, not code).

Values follow realworldrl_suite's `easy` / `medium` / `hard` combined challenges (Dulac-Arnold et
al. 2020): action and observation delays in steps, Gaussian action/observation noise sigma, and the
per-step probability of a dropped or stuck observation. They assume roughly unit-scale (normalized)
observations and actions in [-1, 1]. Not reproduced: reward delay, multi-step dropped/stuck spans,
action repetition, physics perturbations and extra dummy observations.

Order (first = innermost): actuator noise sits at the motor, the command delay before it; sensor
noise sits at the sensor, then packets are lost or frozen in transport, then delivered late.
"""

from __future__ import annotations

from typing import Any

from simreal.schema import ConfigError
from simreal.simulation.effects.specs import EffectSpec, parse_effects


def _challenge(delay_steps: int, std: float, prob: float) -> list[dict[str, Any]]:
    return [
        {"type": "action_noise", "std": std},
        {"type": "observation_noise", "std": std},
        {"type": "dropped_observation", "prob": prob},
        {"type": "stuck_observation", "prob": prob},
        {"type": "action_delay", "steps": delay_steps},
        {"type": "observation_delay", "steps": delay_steps},
    ]


PRESETS: dict[str, list[dict[str, Any]]] = {
    "easy": _challenge(delay_steps=3, std=0.1, prob=0.01),
    "medium": _challenge(delay_steps=6, std=0.3, prob=0.05),
    "hard": _challenge(delay_steps=9, std=1.0, prob=0.1),
}
"""Preset name -> list of effect spec mappings, as they would appear in YAML."""


def preset_effects(name: str) -> list[EffectSpec]:
    """The validated effect specs of preset `name` (one of `PRESETS`)."""
    if name not in PRESETS:
        raise ConfigError(f"preset: unknown effects preset {name!r} (allowed: {', '.join(PRESETS)})")
    return parse_effects(PRESETS[name], f"preset {name!r}")
