"""Actuator-side effects: noise, delay, dead zone and saturation on Box actions.

Each wrapper changes only the action passed to the inner env (`action()`, as in Gymnasium's
`ActionWrapper`); what the inner env returns passes through untouched. 'Neutral' is the do-nothing
command: 0 where 0 lies inside the action bounds, else the midpoint of the bounds (see
`simreal.simulation.effects.base.neutral_value`).
"""

from __future__ import annotations

from collections import deque
from typing import ClassVar

import numpy as np

from simreal.simulation.effects.base import (
    ActionEffect,
    Array,
    BoxEnv,
    NoiseStream,
    bounded_box,
    float_box,
    neutral_value,
)
from simreal.simulation.effects.params import NON_NEGATIVE, STEPS, IntScalarLike, Param, Rule, ScalarLike


class ActionNoise(ActionEffect):
    """Actuator noise: the env receives `action + N(0, std)` per step, clipped to the action bounds."""

    name = "action_noise"
    params: ClassVar = {"std": NON_NEGATIVE}
    std: Param

    def __init__(self, env: BoxEnv, std: ScalarLike) -> None:
        super().__init__(env, std=std)
        box = float_box(env.action_space, "ActionNoise", "action")
        self._shape, self._dtype = box.shape, box.dtype
        self._low, self._high = box.low, box.high
        self._noise: NoiseStream | None = None

    def start_episode(self, rng: np.random.Generator) -> None:
        self._noise = NoiseStream(rng, self.now["std"], self._shape, self._dtype)

    def action(self, action: Array) -> Array:
        assert self._noise is not None, "ActionNoise: call reset() before step()"
        noisy = self._noise.next()
        noisy += action
        np.minimum(noisy, self._high, out=noisy)
        np.maximum(noisy, self._low, out=noisy)
        return noisy


class ActionDelay(ActionEffect):
    """Actuation latency: the action given at step t reaches the env at step t + `steps`.

    For the first `steps` steps of an episode the env receives the neutral action. `steps` may be a
    `[low, high]` range, drawn per episode as an integer. Pending actions are discarded at reset.
    """

    name = "action_delay"
    params: ClassVar = {"steps": STEPS}
    steps: Param

    def __init__(self, env: BoxEnv, steps: IntScalarLike) -> None:
        super().__init__(env, steps=steps)
        self._neutral = neutral_value(float_box(env.action_space, "ActionDelay", "action"))
        self._pending: deque[Array] = deque()

    def start_episode(self, rng: np.random.Generator) -> None:
        self._pending = deque(self._neutral.copy() for _ in range(int(self.now["steps"])))

    def action(self, action: Array) -> Array:
        if not self._pending:
            return action
        self._pending.append(np.array(action))
        return self._pending.popleft()


class ActuatorDeadZone(ActionEffect):
    """A motor that ignores small commands: components close to neutral become neutral.

    Component i is replaced by its neutral value n_i when |a_i - n_i| < threshold * (high_i - low_i) / 2,
    i.e. `threshold` is a fraction of half the action range (0 <= threshold < 1). The action space
    must be bounded.
    """

    name = "actuator_dead_zone"
    params: ClassVar = {"threshold": Rule(ge=0.0, lt=1.0)}
    threshold: Param

    def __init__(self, env: BoxEnv, threshold: ScalarLike) -> None:
        super().__init__(env, threshold=threshold)
        box = bounded_box(env.action_space, "ActuatorDeadZone", "action")
        self._neutral = neutral_value(box)
        self._half_range = (box.high.astype(np.float64) - box.low) / 2.0
        self._width = (self.threshold.low * self._half_range).astype(box.dtype)

    def start_episode(self, rng: np.random.Generator) -> None:
        self._width = (self.now["threshold"] * self._half_range).astype(self._neutral.dtype)

    def action(self, action: Array) -> Array:
        applied = np.array(action)
        distance = applied - self._neutral
        np.abs(distance, out=distance)
        np.copyto(applied, self._neutral, where=distance < self._width)
        return applied


class ActuatorSaturation(ActionEffect):
    """A weak motor: actions are clipped to `limit` times the action bounds, around neutral.

    Component i is clipped to `[n + limit * (low - n), n + limit * (high - n)]` with n the neutral
    value, so for bounds [-1, 1] and limit 0.5 the motor delivers at most +-0.5. The action space
    must be bounded; 0 < limit <= 1.
    """

    name = "actuator_saturation"
    params: ClassVar = {"limit": Rule(gt=0.0, le=1.0)}
    limit: Param

    def __init__(self, env: BoxEnv, limit: ScalarLike) -> None:
        super().__init__(env, limit=limit)
        self._box = bounded_box(env.action_space, "ActuatorSaturation", "action")
        self._neutral = neutral_value(self._box).astype(np.float64)
        self._low, self._high = self._bounds(self.limit.low)

    def _bounds(self, limit: float) -> tuple[Array, Array]:
        low = (self._neutral + limit * (self._box.low - self._neutral)).astype(self._box.dtype)
        high = (self._neutral + limit * (self._box.high - self._neutral)).astype(self._box.dtype)
        return low, high

    def start_episode(self, rng: np.random.Generator) -> None:
        self._low, self._high = self._bounds(self.now["limit"])

    def action(self, action: Array) -> Array:
        clipped = np.minimum(action, self._high)
        np.maximum(clipped, self._low, out=clipped)
        return clipped
