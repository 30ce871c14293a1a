"""Timing effects: an irregular control period.

Real controllers miss deadlines: sometimes a command stays on the actuators for longer than one
control period. `ControlJitter` models that by holding the action for extra inner env steps.
"""

from __future__ import annotations

from typing import Any, ClassVar, SupportsFloat

import numpy as np

from simreal.simulation.effects.base import Array, BoxEnv, Effect, float_box
from simreal.simulation.effects.params import PROBABILITY, STEPS, IntScalarLike, Param, ScalarLike


class ControlJitter(Effect):
    """With probability `prob` per step, the action is held for 1..`max_extra_steps` extra inner steps.

    The number of extra steps is uniform on 1..max_extra_steps. Rewards of all inner steps are
    summed; the hold stops early when the inner env terminates or truncates, and the latest
    observation, flags and info are returned. Inner step-counting wrappers (TimeLimit) see every
    inner step.
    """

    name = "control_jitter"
    params: ClassVar = {"max_extra_steps": STEPS, "prob": PROBABILITY}
    max_extra_steps: Param
    prob: Param

    def __init__(self, env: BoxEnv, max_extra_steps: IntScalarLike, prob: ScalarLike) -> None:
        super().__init__(env, max_extra_steps=max_extra_steps, prob=prob)
        float_box(env.action_space, "ControlJitter", "action")
        self._rng: np.random.Generator | None = None

    def start_episode(self, rng: np.random.Generator) -> None:
        self._rng = rng

    def step(self, action: Array) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        max_extra = int(self.now["max_extra_steps"])
        if max_extra == 0:
            return obs, reward, terminated, truncated, info
        assert self._rng is not None, "ControlJitter: call reset() before step()"
        if terminated or truncated or self._rng.random() >= self.now["prob"]:
            return obs, reward, terminated, truncated, info
        extra = int(self._rng.integers(1, max_extra, endpoint=True))
        total = float(reward)
        for _ in range(extra):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, info
