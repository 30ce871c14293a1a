"""`observation.action_history` over a batched `VecEnv`: the same observation as `ActionHistory` per env.

Each env's observation is `[obs, a_{t-k}, ..., a_{t-1}]` (float32), the neutral action before the first
one; a finished env's `terminal_observation` carries the history up to its last action, and its reset
observation a fresh (neutral) history - exactly what `ActionHistory` inside `DummyVecEnv` gives.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from simreal.simulation.observation import history_spaces


class VecActionHistory(VecEnvWrapper):
    def __init__(self, venv: VecEnv, steps: int) -> None:
        space, self._neutral = history_spaces(venv.observation_space, venv.action_space, steps)
        super().__init__(venv, observation_space=space)
        self._dim = int(np.prod(venv.action_space.shape or ()))
        self._history = np.tile(self._neutral, (venv.num_envs, 1))
        self._actions = np.zeros((venv.num_envs, self._dim), dtype=np.float32)

    def _observe(self, obs: np.ndarray) -> np.ndarray:
        return np.concatenate([obs.reshape(len(obs), -1).astype(np.float32), self._history], axis=1)

    def reset(self) -> VecEnvObs:
        obs = self.venv.reset()
        self._history[:] = self._neutral
        return self._observe(np.asarray(obs))

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.float32).reshape(self.num_envs, self._dim)
        self.venv.step_async(actions)

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        self._history[:, : -self._dim] = self._history[:, self._dim :]
        self._history[:, -self._dim :] = self._actions
        infos = list(infos)
        for i in np.flatnonzero(dones):
            info: dict[str, Any] = dict(infos[i])
            terminal = np.asarray(info["terminal_observation"]).reshape(-1).astype(np.float32)
            info["terminal_observation"] = np.concatenate([terminal, self._history[i]])
            infos[i] = info
        self._history[dones] = self._neutral
        return self._observe(np.asarray(obs)), rewards, dones, infos
