"""Collecting calibration episodes: a policy on the target, optionally excited, every step counted.

The target is opened once for all episodes (an exclusive one is held by its host-wide lock while open)
and closed at the end. What is recorded is what the robot reported and the command it got: the raw
observation vector of the target env (below the policy's own observation wrappers) and the action after
excitation (`Excite`: Gaussian noise of `excite` std in action units, clipped to the bounds), so that
parameters the policy's own motion leaves hidden become visible.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
import torch

from simreal.schema import ConfigError
from simreal.simulation.accounting import TargetLedger, counted_env
from simreal.simulation.calibration.recording import Episode, Recording
from simreal.training.engine.evaluation import normalize
from simreal.training.engine.sb3.loading import load_for_env


class Excite(gym.ActionWrapper[Any, Any, Any]):
    """The command plus Gaussian noise of `std` (action units), clipped to the action bounds."""

    def __init__(self, env: gym.Env[Any, Any], std: float, seed: int) -> None:
        super().__init__(env)
        self._std = std
        self._rng = np.random.default_rng([seed, 17])
        box = env.action_space
        assert isinstance(box, gym.spaces.Box)
        self._low, self._high = box.low, box.high

    def action(self, action: Any) -> Any:
        if self._std == 0:
            return action
        noisy = np.asarray(action, dtype=np.float64) + self._std * self._rng.standard_normal(np.shape(action))
        return np.clip(noisy, self._low, self._high).astype(self.action_space.dtype)


class Record(gym.Wrapper[Any, Any, Any, Any]):
    """Keeps every episode's observations and the actions the env below got."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        self.episodes: list[Episode] = []
        self._obs: list[np.ndarray] = []
        self._actions: list[np.ndarray] = []

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self._close_episode()
        obs, info = self.env.reset(**kwargs)
        self._obs = [np.asarray(obs, dtype=np.float64).ravel()]
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._actions.append(np.asarray(action, dtype=np.float64).ravel())
        self._obs.append(np.asarray(obs, dtype=np.float64).ravel())
        return obs, reward, terminated, truncated, info

    def _close_episode(self) -> None:
        if self._actions:
            self.episodes.append(Episode(np.array(self._obs), np.array(self._actions)))
        self._obs, self._actions = [], []

    def recording(self) -> Recording:
        self._close_episode()
        return Recording(tuple(self.episodes))


def check_excite(excite: float, space: gym.Space[Any], where: str) -> None:
    """`excite` >= 0 and within half the narrowest action range (beyond it, noise is mostly clipping)."""
    if not isinstance(space, gym.spaces.Box) or not space.is_bounded("both"):
        if excite > 0:
            raise ConfigError(f"{where}: excitation needs a bounded Box action space, got {space}")
        return
    half = float(np.min(space.high - space.low) / 2)
    if not 0 <= excite <= half:
        raise ConfigError(
            f"{where}: {excite:g} lies beyond the action bounds (allowed: 0 .. {half:g}, half the narrowest "
            "action range, in action units)"
        )


def collect(
    policy: Path,
    target_id: str,
    episodes: int,
    excite: float,
    seed: int,
    device: torch.device,
    ledger: TargetLedger,
    env_kwargs: dict[str, Any] | None = None,
    max_steps: int | None = None,
) -> tuple[Recording, list[float]]:
    """`episodes` episodes of `policy` (deterministic, plus excitation) on the target - stopping at
    `max_steps` target steps, mid-episode if need be; the recording and the episodes' returns (of the
    whole episodes). `excite` is checked by the caller (`check_excite`) before the target opens."""
    recorder: list[Record] = []

    def make_base() -> gym.Env[Any, Any]:
        env = Record(counted_env(target_id, ledger, env_kwargs or {}))
        recorder.append(env)
        return Excite(env, excite, seed)

    loaded = load_for_env(policy, make_base, device, seed)
    returns = []
    with ledger.doing("other"):
        env = loaded.make_env()
        try:
            steps = 0
            for k in range(episodes):
                if max_steps is not None and steps >= max_steps:
                    break
                obs, _ = env.reset(seed=seed + k)
                total, done = 0.0, False
                while not done and (max_steps is None or steps < max_steps):
                    seen = normalize(loaded.encoder.encode(obs), loaded.obs_rms)
                    action, _ = loaded.model.predict(seen, deterministic=True)
                    obs, reward, terminated, truncated, _ = env.step(action)
                    total += float(reward)
                    steps += 1
                    done = terminated or truncated
                if done:
                    returns.append(total)
        finally:
            env.close()
    return recorder[-1].recording(), returns
