"""Deterministic evaluation of a policy on an env, with its own normalization statistics.

Episode k of an evaluation with base seed s is reset with seed `s + k`, so every variant of an
experiment meets the same episode starts (common random numbers make comparisons tighter).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.running_mean_std import RunningMeanStd

CLIP_OBS = 10.0
EPSILON = 1e-8


def normalize(obs: np.ndarray, rms: RunningMeanStd | None) -> np.ndarray:
    """Observation normalization exactly as SB3's VecNormalize applies it."""
    if rms is None:
        return obs
    out = np.clip((obs - rms.mean) / np.sqrt(rms.var + EPSILON), -CLIP_OBS, CLIP_OBS)
    return out.astype(np.float32)


@dataclass(frozen=True)
class EvalResult:
    """Per-episode returns, lengths and success flags (NaN where the task reports none)."""

    returns: np.ndarray
    lengths: np.ndarray
    successes: np.ndarray

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std_return(self) -> float:
        return float(np.std(self.returns))

    @property
    def success_rate(self) -> float | None:
        ok = self.successes[~np.isnan(self.successes)]
        return float(np.mean(ok)) if ok.size else None


def evaluate(
    model: BaseAlgorithm,
    make_env: Callable[[], gym.Env[Any, Any]],
    episodes: int,
    seed: int,
    obs_rms: RunningMeanStd | None = None,
    encode: Callable[[Any], Any] | None = None,
) -> EvalResult:
    """Run `episodes` deterministic episodes on a fresh env from `make_env`.

    `encode` maps an env observation to what the policy reads (e.g. cached backbone features)."""
    env = make_env()
    returns, lengths, successes = [], [], []
    try:
        for k in range(episodes):
            obs, info = env.reset(seed=seed + k)
            done, total, length, success = False, 0.0, 0, float("nan")
            while not done:
                policy_obs = encode(obs) if encode is not None else obs
                action, _ = model.predict(normalize(policy_obs, obs_rms), deterministic=True)
                obs, reward, terminated, truncated, info = env.step(action)
                total += float(reward)
                length += 1
                done = terminated or truncated
            if "is_success" in info:
                success = float(info["is_success"])
            returns.append(total)
            lengths.append(length)
            successes.append(success)
    finally:
        env.close()
    return EvalResult(np.array(returns), np.array(lengths), np.array(successes))
