"""Tiny deterministic envs for wrapper tests (no physics, instant steps)."""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

Array = NDArray[Any]


class CounterEnv(gym.Env[Array, Array]):
    """Box env whose observation is the step counter, recording every action it receives.

    - observation: `obs_dim` copies of t (steps since reset, t = 0 at reset), float32, clipped into
      `obs_bounds` when given (else the space is unbounded);
    - reward: 1.0 per step; terminated when t == `terminate_at`; truncated when t == `max_steps`;
    - `actions`: copies of the actions received since the last reset; `steps`: t.
    Stepping after the episode ended raises, so wrappers that step too far are caught.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        obs_dim: int = 3,
        act_dim: int = 2,
        *,
        max_steps: int = 1000,
        terminate_at: int | None = None,
        obs_bounds: tuple[float, float] | None = None,
        action_low: float | list[float] = -1.0,
        action_high: float | list[float] = 1.0,
    ) -> None:
        low, high = obs_bounds if obs_bounds is not None else (-np.inf, np.inf)
        self.observation_space = gym.spaces.Box(low, high, shape=(obs_dim,), dtype=np.float32)
        self.action_space = gym.spaces.Box(
            np.broadcast_to(np.asarray(action_low, dtype=np.float32), (act_dim,)),
            np.broadcast_to(np.asarray(action_high, dtype=np.float32), (act_dim,)),
            dtype=np.float32,
        )
        self.max_steps = max_steps
        self.terminate_at = terminate_at
        self.actions: list[Array] = []
        self.steps = 0
        self._done = True

    def _obs(self) -> Array:
        box = self.observation_space
        assert isinstance(box, gym.spaces.Box)
        return np.clip(np.full(box.shape, self.steps, dtype=np.float32), box.low, box.high)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Array, dict[str, Any]]:
        super().reset(seed=seed)
        self.actions = []
        self.steps = 0
        self._done = False
        return self._obs(), {}

    def step(self, action: Array) -> tuple[Array, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("CounterEnv.step() called after the episode ended; call reset()")
        self.actions.append(np.array(action, copy=True))
        self.steps += 1
        terminated = self.terminate_at is not None and self.steps >= self.terminate_at
        truncated = self.steps >= self.max_steps
        self._done = terminated or truncated
        return self._obs(), 1.0, terminated, truncated, {"t": self.steps}
