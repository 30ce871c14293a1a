"""Deterministic evaluation of a policy on an env, with its own normalization statistics.

Episode k of an evaluation with base seed s is reset with seed `s + k`, so every variant of an
experiment meets the same episode starts (common random numbers make comparisons tighter). Several
envs may run the episodes side by side (pixel policies: one backbone batch per step, each new frame
encoded once), the policy acting on each env's observation alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.running_mean_std import RunningMeanStd

if TYPE_CHECKING:
    from simreal.training.engine.perception import Encoder

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
    encoder: Encoder | None = None,
    n_envs: int = 1,
) -> EvalResult:
    """Run `episodes` deterministic episodes on `n_envs` fresh envs from `make_env` (at most `episodes`).

    Episode k is reset with seed `seed + k` whichever env runs it, and the envs step together: `encoder`
    (what the policy reads, e.g. cached backbone features) encodes one batch per step, and the policy
    acts on each row alone - a batched matmul differs from a single one in the last bits, and a
    balancing policy's closed loop amplifies that (measured on a pixel policy: 6e-7 at the first
    action, 4e-4 twelve steps later, then other returns). So the returns are exactly those of the
    one-env loop on the same seeds. `n_envs` > 1 opens that many instances at once: never for an
    exclusive target."""
    if n_envs < 1:
        raise ValueError(f"n_envs must be >= 1, got {n_envs}")
    encode = encoder.batch() if encoder is not None else None
    envs = [make_env() for _ in range(min(n_envs, episodes))]
    returns, lengths, successes = np.zeros(episodes), np.zeros(episodes, int), np.full(episodes, np.nan)
    running: dict[int, int] = {}  # env -> the episode it runs
    obs: list[Any] = [None] * len(envs)
    started = 0

    def start(i: int) -> None:
        nonlocal started
        running[i], started = started, started + 1
        obs[i], _ = envs[i].reset(seed=seed + running[i])

    try:
        for i in range(len(envs)):
            start(i)
        rows: dict[int, int] = {}  # env -> its row in the last batch
        fresh = set(running)
        while running:
            active = sorted(running)
            batch = [obs[i] for i in active]
            previous = [None if i in fresh else rows[i] for i in active]
            seen = batch if encode is None else _rows(encode(batch, previous), len(active))
            actions = [_act(model, normalize(row, obs_rms)) for row in seen]
            rows, fresh = {i: row for row, i in enumerate(active)}, set()
            for i, action in zip(active, actions, strict=True):
                k = running[i]
                obs[i], reward, terminated, truncated, info = envs[i].step(action)
                returns[k] += float(reward)
                lengths[k] += 1
                if terminated or truncated:
                    if "is_success" in info:
                        successes[k] = float(info["is_success"])
                    del running[i]
                    if started < episodes:
                        start(i)
                        fresh.add(i)
    finally:
        for env in envs:
            env.close()
    return EvalResult(returns, lengths, successes)


def _act(model: BaseAlgorithm, obs: Any) -> np.ndarray:
    action, _ = model.predict(obs, deterministic=True)
    return np.asarray(action)


def _rows(batch: Any, n: int) -> list[Any]:
    """The rows of a batch of observations (arrays, or a Dict of arrays)."""
    if isinstance(batch, dict):
        return [{key: value[i] for key, value in batch.items()} for i in range(n)]
    return [batch[i] for i in range(n)]
