"""Builders behind the registered randomized, target and pixel ids (see `envs/__init__.py`).

Wrapper order, innermost first: nominal env (with its TimeLimit) -> `RandomizeDynamics` -> effects in
YAML order. Physics is changed at reset; effects act on every step.

Pixel ids, innermost first: nominal env (rendering `rgb_array` frames of the YAML's size) ->
`RandomizeDynamics` -> `RandomizeVisuals` -> effects -> `PixelObservation` -> `ImageNoise` ->
`StackFrames`. The look is applied at reset before the first frame is rendered. Sensor-side effects
(observation noise, delay, dropped and stuck readings) act on the state vector, which the agent does
not see through a camera: they are skipped unless `proprio: true`, where they act on the "state" entry.
Camera noise is `image_noise_std` instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym

import envs
from simreal.config_base import ConfigError
from simreal.effects import EffectSpec, Scalar, apply_effects
from simreal.pixels import ImageNoise, PixelObservation, StackFrames
from simreal.randomization import RandomizationSpec, RandomizeDynamics
from simreal.tasks import PixelSpec, TaskSpec, load_task, target_spec, task_file
from simreal.visuals import RandomizeVisuals, VisualRandomizationSpec

SENSOR_EFFECTS = frozenset(
    {"observation_noise", "observation_delay", "dropped_observation", "stuck_observation"}
)
"""Effect types that only change the state observation (skipped for pixel ids without `proprio`)."""


def make_randomized(task: str, **kwargs: Any) -> gym.Env[Any, Any]:
    """The randomized source sim of `task`: physics and sensing resampled per episode."""
    spec = load_task(task)
    env = gym.make(envs.TASKS[task].nominal_id, **kwargs)
    env = RandomizeDynamics(env, spec.randomization, where=f"{task_file(task)}: randomization")
    return apply_effects(env, spec.source_effects)


def make_target(task: str, target: str, **kwargs: Any) -> gym.Env[Any, Any]:
    """A real-like target of `task`: fixed shifted physics plus its ordered effects."""
    spec = target_spec(task, target)
    env = gym.make(envs.TASKS[task].nominal_id, **kwargs)
    physics = RandomizationSpec(params=spec.physics)
    env = RandomizeDynamics(env, physics, where=f"{task_file(task)}: targets.{target}.physics")
    return apply_effects(env, spec.effects)


def make_pixel_nominal(task: str, **kwargs: Any) -> gym.Env[Any, Any]:
    """The nominal sim of `task` seen through its camera: stacked RGB frames, nothing varied."""
    pixels = _pixels(task, load_task(task))
    return _observe(_rendering(task, pixels, kwargs), pixels, noise_std=0.0)


def make_pixel_randomized(task: str, **kwargs: Any) -> gym.Env[Any, Any]:
    """The randomized source sim of `task` seen through its camera: physics, look and effects per episode."""
    spec = load_task(task)
    pixels = _pixels(task, spec)
    path = task_file(task)
    env: gym.Env[Any, Any] = RandomizeDynamics(
        _rendering(task, pixels, kwargs), spec.randomization, where=f"{path}: randomization"
    )
    env = RandomizeVisuals(env, pixels.randomization, where=f"{path}: pixels.randomization.params")
    env = apply_effects(env, effects_under_camera(spec.source_effects, pixels.proprio))
    return _observe(env, pixels, pixels.image_noise_std)


def make_pixel_target(task: str, target: str, **kwargs: Any) -> gym.Env[Any, Any]:
    """A real-like target of `task` seen through its camera: fixed physics and visual shifts plus effects."""
    pixels = _pixels(task, load_task(task))
    spec = target_spec(task, target)
    path = f"{task_file(task)}: targets.{target}"
    env: gym.Env[Any, Any] = RandomizeDynamics(
        _rendering(task, pixels, kwargs), RandomizationSpec(params=spec.physics), where=f"{path}.physics"
    )
    env = RandomizeVisuals(env, VisualRandomizationSpec(params=spec.visuals), where=f"{path}.visuals")
    env = apply_effects(env, effects_under_camera(spec.effects, pixels.proprio))
    return _observe(env, pixels, spec.image_noise_std)


def _pixels(task: str, spec: TaskSpec) -> PixelSpec:
    if spec.pixels is None:
        raise ConfigError(f"{task_file(task)}: pixels: missing (the task's pixel ids need this section)")
    return spec.pixels


def _rendering(task: str, pixels: PixelSpec, kwargs: dict[str, Any]) -> gym.Env[Any, Any]:
    """The nominal env of `task`, rendering `rgb_array` frames of the configured size."""
    info = envs.TASKS[task]
    size = {name: pixels.image_size for name in info.image_size_kwargs}
    return gym.make(info.nominal_id, **{"render_mode": "rgb_array", **size, **pixels.env_kwargs, **kwargs})


def effects_under_camera(effects: Sequence[EffectSpec], proprio: bool) -> list[EffectSpec]:
    """The effects placed inside `PixelObservation`: all with `proprio`, else the actuation-side ones."""
    return [e for e in effects if proprio or e.type not in SENSOR_EFFECTS]


def _observe(env: gym.Env[Any, Any], pixels: PixelSpec, noise_std: Scalar) -> gym.Env[Any, Any]:
    """Pixel observation, camera noise (if any) and frame stacking (if more than one frame)."""
    env = PixelObservation(env, image_size=pixels.image_size, proprio=pixels.proprio)
    if noise_std != 0.0:
        env = ImageNoise(env, noise_std)
    if pixels.frame_stack > 1:
        env = StackFrames(env, pixels.frame_stack)
    return env
