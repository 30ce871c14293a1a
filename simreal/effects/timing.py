"""Timing effects: an irregular control period.

Real controllers miss deadlines: sometimes a command stays on the actuators for longer than one
control period. `ControlJitter` models that by holding the action for extra inner env steps.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from simreal.effects.base import Array, BoxEnv, float_box, record_effects
from simreal.effects.params import IntScalarLike, ScalarLike, param


class ControlJitter(gym.Wrapper[Array, Array, Array, Array], gym.utils.RecordConstructorArgs):
    """With probability `prob` per step, the action is held for 1..`max_extra_steps` extra inner steps.

    The number of extra steps is uniform on 1..max_extra_steps. Rewards of all inner steps are
    summed; the hold stops early when the inner env terminates or truncates, and the latest
    observation, flags and info are returned. Inner step-counting wrappers (TimeLimit) see every
    inner step.
    """

    effect = "control_jitter"

    def __init__(self, env: BoxEnv, max_extra_steps: IntScalarLike, prob: ScalarLike) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, max_extra_steps=max_extra_steps, prob=prob)
        gym.Wrapper.__init__(self, env)
        float_box(env.action_space, "ControlJitter", "action")
        self.max_extra_steps = param("max_extra_steps", max_extra_steps, owner="ControlJitter")
        self.prob = param("prob", prob, owner="ControlJitter")
        self._max_extra_now = int(self.max_extra_steps.low)
        self._prob_now = self.prob.low
        self._rng: np.random.Generator | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Array, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._rng = rng = self.np_random
        self._max_extra_now = int(self.max_extra_steps.draw(rng))
        self._prob_now = self.prob.draw(rng)
        drawn = {"max_extra_steps": self._max_extra_now, "prob": self._prob_now}
        return obs, record_effects(info, self.effect, drawn)

    def step(self, action: Array) -> tuple[Array, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self._max_extra_now == 0:
            return obs, reward, terminated, truncated, info
        assert self._rng is not None, "ControlJitter: call reset() before step()"
        if terminated or truncated or self._rng.random() >= self._prob_now:
            return obs, reward, terminated, truncated, info
        extra = int(self._rng.integers(1, self._max_extra_now, endpoint=True))
        total = float(reward)
        for _ in range(extra):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, info
