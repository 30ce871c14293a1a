"""Actuator-side effects: noise, delay, dead zone and saturation on Box actions.

Each wrapper changes only the action passed to the inner env; what the inner env returns passes
through untouched. 'Neutral' is the do-nothing command: 0 where 0 lies inside the action bounds,
else the midpoint of the bounds (see `simreal.effects.base.neutral_value`).
"""

from __future__ import annotations

from collections import deque
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from simreal.effects.base import (
    Array,
    BoxEnv,
    NoiseStream,
    bounded_box,
    float_box,
    neutral_value,
    record_effects,
)
from simreal.effects.params import IntScalarLike, ScalarLike, param

StepResult = tuple[Array, SupportsFloat, bool, bool, dict[str, Any]]


class ActionNoise(gym.Wrapper[Array, Array, Array, Array], gym.utils.RecordConstructorArgs):
    """Actuator noise: the env receives `action + N(0, std)` per step, clipped to the action bounds."""

    effect = "action_noise"

    def __init__(self, env: BoxEnv, std: ScalarLike) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, std=std)
        gym.Wrapper.__init__(self, env)
        box = float_box(env.action_space, "ActionNoise", "action")
        self.std = param("std", std, owner="ActionNoise")
        self._shape = box.shape
        self._dtype = box.dtype
        self._low, self._high = box.low, box.high
        self._noise: NoiseStream | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Array, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        rng = self.np_random
        std = self.std.draw(rng)
        self._noise = NoiseStream(rng, std, self._shape, self._dtype)
        return obs, record_effects(info, self.effect, {"std": std})

    def step(self, action: Array) -> StepResult:
        assert self._noise is not None, "ActionNoise: call reset() before step()"
        noisy = self._noise.next()
        noisy += action
        np.minimum(noisy, self._high, out=noisy)
        np.maximum(noisy, self._low, out=noisy)
        return self.env.step(noisy)


class ActionDelay(gym.Wrapper[Array, Array, Array, Array], gym.utils.RecordConstructorArgs):
    """Actuation latency: the action given at step t reaches the env at step t + `steps`.

    For the first `steps` steps of an episode the env receives the neutral action. `steps` may be a
    `[low, high]` range, drawn per episode as an integer. Pending actions are discarded at reset.
    """

    effect = "action_delay"

    def __init__(self, env: BoxEnv, steps: IntScalarLike) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, steps=steps)
        gym.Wrapper.__init__(self, env)
        box = float_box(env.action_space, "ActionDelay", "action")
        self.steps = param("steps", steps, owner="ActionDelay")
        self._neutral = neutral_value(box)
        self._steps_now = int(self.steps.low)
        self._pending: deque[Array] = deque()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Array, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._steps_now = int(self.steps.draw(self.np_random))
        self._pending = deque(self._neutral.copy() for _ in range(self._steps_now))
        return obs, record_effects(info, self.effect, {"steps": self._steps_now})

    def step(self, action: Array) -> StepResult:
        if self._steps_now == 0:
            return self.env.step(action)
        self._pending.append(np.array(action))
        return self.env.step(self._pending.popleft())


class ActuatorDeadZone(gym.Wrapper[Array, Array, Array, Array], gym.utils.RecordConstructorArgs):
    """A motor that ignores small commands: components close to neutral become neutral.

    Component i is replaced by its neutral value n_i when |a_i - n_i| < threshold * (high_i - low_i) / 2,
    i.e. `threshold` is a fraction of half the action range (0 <= threshold < 1). The action space
    must be bounded.
    """

    effect = "actuator_dead_zone"

    def __init__(self, env: BoxEnv, threshold: ScalarLike) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, threshold=threshold)
        gym.Wrapper.__init__(self, env)
        box = bounded_box(env.action_space, "ActuatorDeadZone", "action")
        self.threshold = param("threshold", threshold, owner="ActuatorDeadZone")
        self._neutral = neutral_value(box)
        self._half_range = (box.high.astype(np.float64) - box.low) / 2.0
        self._width = (self.threshold.low * self._half_range).astype(box.dtype)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Array, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        threshold = self.threshold.draw(self.np_random)
        self._width = (threshold * self._half_range).astype(self._neutral.dtype)
        return obs, record_effects(info, self.effect, {"threshold": threshold})

    def step(self, action: Array) -> StepResult:
        applied = np.array(action)
        distance = applied - self._neutral
        np.abs(distance, out=distance)
        np.copyto(applied, self._neutral, where=distance < self._width)
        return self.env.step(applied)


class ActuatorSaturation(gym.Wrapper[Array, Array, Array, Array], gym.utils.RecordConstructorArgs):
    """A weak motor: actions are clipped to `limit` times the action bounds, around neutral.

    Component i is clipped to `[n + limit * (low - n), n + limit * (high - n)]` with n the neutral
    value, so for bounds [-1, 1] and limit 0.5 the motor delivers at most +-0.5. The action space
    must be bounded; 0 < limit <= 1.
    """

    effect = "actuator_saturation"

    def __init__(self, env: BoxEnv, limit: ScalarLike) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, limit=limit)
        gym.Wrapper.__init__(self, env)
        box = bounded_box(env.action_space, "ActuatorSaturation", "action")
        self.limit = param("limit", limit, owner="ActuatorSaturation")
        self._neutral = neutral_value(box).astype(np.float64)
        self._box = box
        self._low, self._high = self._bounds(self.limit.low)

    def _bounds(self, limit: float) -> tuple[Array, Array]:
        low = (self._neutral + limit * (self._box.low - self._neutral)).astype(self._box.dtype)
        high = (self._neutral + limit * (self._box.high - self._neutral)).astype(self._box.dtype)
        return low, high

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Array, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        limit = self.limit.draw(self.np_random)
        self._low, self._high = self._bounds(limit)
        return obs, record_effects(info, self.effect, {"limit": limit})

    def step(self, action: Array) -> StepResult:
        clipped = np.minimum(action, self._high)
        np.maximum(clipped, self._low, out=clipped)
        return self.env.step(clipped)
