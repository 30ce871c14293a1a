"""The builders behind the registered source, target and pixel ids (see `registry`): one for a source
sim and one for a target, each observing the state or - `pixels` - the camera.

Wrapper order, innermost first: the task's env (with its TimeLimit; a target's own `env:` when it
names one) -> `RandomizeDynamics` -> effects in YAML order. Physics is changed at reset; effects act
on every step.

Pixel ids, innermost first: the env (rendering `rgb_array` frames of the YAML's size) ->
`RandomizeDynamics` -> `RandomizeVisuals` -> effects -> `PixelObservation` -> `ImageNoise` ->
`StackFrames`. The look is applied at reset before the first frame is rendered. Sensor-side effects
(observation noise, delay, dropped and stuck readings) act on the state vector, which the agent does
not see through a camera: they are skipped unless `proprio: true`, where they act on the "state" entry
(and on the whole state a labelling teacher reads, `teacher_state`). Camera noise is `image_noise_std`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec

from simreal.schema import ConfigError
from simreal.simulation.accounting import CountSteps, ExclusiveLock, HoldExclusive, TargetLedger
from simreal.simulation.adr import AdrState
from simreal.simulation.effects import SENSOR_EFFECTS, EffectSpec, Scalar, apply_effects
from simreal.simulation.pixels import ImageNoise, PixelObservation, StackFrames
from simreal.simulation.randomization import RandomizationSpec, RandomizeDynamics
from simreal.simulation.registry import Task, get_task
from simreal.simulation.tasks import PixelSpec
from simreal.simulation.visuals import RandomizeVisuals, VisualRandomizationSpec


def make_source(
    task: str,
    randomized: bool = True,
    pixels: bool = False,
    adr: AdrState | None = None,
    teacher_state: bool = False,
    **kwargs: Any,
) -> gym.Env[Any, Any]:
    """The source sim of `task`: randomized (physics and sensing resampled per episode; with `adr`, the
    ADR state a training run's envs share) or nominal, observed as its state or (`pixels`) through its
    camera - the look randomized too, only actuation-side effects inside the camera's view.

    `teacher_state` (pixels): the Dict also carries the whole state (`"sim_state"`), with the sensor
    effects a state policy's training had - what a teacher labelling a camera student reads beside the
    student's view (`simreal.training.methods.distill.pixels`)."""
    t = get_task(task)
    camera = _pixels(t) if pixels else None
    env = gym.make(t.nominal_id, **kwargs) if camera is None else _rendering(t.env, camera, kwargs)
    if randomized:
        where = f"{t.source}: randomization.params"
        env = RandomizeDynamics(env, t.spec.randomization, where=where, adr=adr)
        effects: Sequence[EffectSpec] = t.spec.source_effects
        if camera is not None:
            looks = f"{t.source}: pixels.randomization.params"
            env = RandomizeVisuals(env, camera.randomization, where=looks)
            effects = effects_under_camera(effects, camera.proprio or teacher_state)
        env = apply_effects(env, effects)
    if camera is None:
        return env
    return _observe(env, camera, camera.image_noise_std if randomized else 0.0, t.source, teacher_state)


def make_target(
    task: str, target: str, ledger: TargetLedger | None = None, pixels: bool = False, **kwargs: Any
) -> gym.Env[Any, Any]:
    """A real-like target of `task`: its env with a fixed physics shift plus its ordered effects, observed
    as its state or (`pixels`) through its camera, with the target's visual shift and camera noise.

    With a `ledger`, every step of the target's own env is counted into it (see `accounting`)."""
    t = get_task(task)
    camera = _pixels(t) if pixels else None
    spec = t.spec.target(target)
    path = f"{t.source}: targets.{target}"
    base = t.target_env(target)
    lock = ExclusiveLock(t.target_id(target)) if spec.exclusive else None  # before anything connects
    try:
        env = gym.make(base, **kwargs) if camera is None else _rendering(base, camera, kwargs)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    env = _counted(env if lock is None else HoldExclusive(env, lock), ledger)
    env = RandomizeDynamics(env, RandomizationSpec(params=spec.physics), where=f"{path}.physics")
    if camera is None:
        return apply_effects(env, spec.effects)
    env = RandomizeVisuals(env, VisualRandomizationSpec(params=spec.visuals), where=f"{path}.visuals")
    env = apply_effects(env, effects_under_camera(spec.effects, camera.proprio))
    return _observe(env, camera, spec.image_noise_std, t.source)


def _counted(env: gym.Env[Any, Any], ledger: TargetLedger | None) -> gym.Env[Any, Any]:
    return env if ledger is None else CountSteps(env, ledger)


def _pixels(task: Task) -> PixelSpec:
    if task.spec.pixels is None:
        raise ConfigError(f"{task.source}: pixels: missing (the task's pixel ids need this section)")
    return task.spec.pixels


def _rendering(env: EnvSpec, pixels: PixelSpec, kwargs: dict[str, Any]) -> gym.Env[Any, Any]:
    """`env`, rendering `rgb_array` frames of the configured size."""
    size = {name: pixels.image_size for name in pixels.image_size_kwargs}
    return gym.make(env, **{"render_mode": "rgb_array", **size, **pixels.env_kwargs, **kwargs})


def effects_under_camera(effects: Sequence[EffectSpec], proprio: bool) -> list[EffectSpec]:
    """The effects placed inside `PixelObservation`: all with `proprio`, else the actuation-side ones."""
    return [e for e in effects if proprio or e.type not in SENSOR_EFFECTS]


def _observe(
    env: gym.Env[Any, Any], pixels: PixelSpec, noise_std: Scalar, where: str, teacher_state: bool = False
) -> gym.Env[Any, Any]:
    """Pixel observation, camera noise (if any) and frame stacking (if more than one frame)."""
    state = env.observation_space
    vector = isinstance(state, gym.spaces.Box) and len(state.shape) == 1
    if (pixels.proprio or teacher_state) and not vector:
        env.close()
        raise ConfigError(
            f"{where}: pixels.proprio: the env's observation is {state}, not a state vector, so there is "
            "no 'state' entry to observe beside the image (allowed: proprio: false, or an env observing "
            "a 1-d Box)"
        )
    dims = pixels.proprio_dims
    if dims is not None and max(dims) >= state.shape[0]:  # type: ignore[index]
        env.close()
        raise ConfigError(
            f"{where}: pixels.proprio_dims: index {max(dims)} is past the env's state vector of "
            f"{state.shape[0]} (allowed: 0..{state.shape[0] - 1})"  # type: ignore[index]
        )
    env = PixelObservation(
        env, image_size=pixels.image_size, proprio=pixels.proprio, state_dims=dims, sim_state=teacher_state
    )
    if noise_std != 0.0:
        env = ImageNoise(env, noise_std)
    if pixels.frame_stack > 1:
        env = StackFrames(env, pixels.frame_stack)
    return env
