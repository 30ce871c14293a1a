"""The KL that steers `schedules.AdaptiveRate`, measured on SB3's own rollouts.

After each rollout (before the update) the policy's action distribution on a sample of the rollout's
observations is kept; at the next rollout start (after the update) the new distribution on the same
observations gives KL(old || new), the rate moves, and both go to TensorBoard (`finetune/learning_rate`,
`finetune/update_kl`). Works for any on-policy SB3 algorithm (PPO, A2C), whether or not it reports an
`approx_kl` of its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import obs_as_tensor

from simreal.training.engine.schedules import AdaptiveRate

SAMPLE = 1024
"""Rollout observations the KL is measured on (all of them when the rollout is smaller)."""


class KLAdaptiveRate(BaseCallback):
    """Moves an `AdaptiveRate` by the KL of each update; `history` holds (step, rate, kl) per update."""

    key = "adaptive_rate"

    def __init__(self, schedule: AdaptiveRate, seed: int = 0) -> None:
        super().__init__()
        self.schedule = schedule
        self.seed = seed
        self.history: list[tuple[int, float, float]] = []
        self._obs: Any = None
        self._old: torch.distributions.Distribution | None = None

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        buffer = self.model.rollout_buffer  # type: ignore[attr-defined]
        n = buffer.buffer_size * buffer.n_envs
        rng = np.random.default_rng([self.seed, self.model.num_timesteps])  # a resumed run draws alike
        rows = rng.choice(n, size=min(SAMPLE, n), replace=False)
        obs = buffer.observations
        flat = (
            {k: v.reshape(n, *v.shape[2:])[rows] for k, v in obs.items()}
            if isinstance(obs, dict)
            else (obs.reshape(n, *obs.shape[2:])[rows])
        )
        self._obs = obs_as_tensor(flat, self.model.device)
        self._old = self._distribution()

    def _on_rollout_start(self) -> None:
        if self._old is None:
            return
        new = self._distribution()
        kl = torch.distributions.kl_divergence(self._old, new)
        if kl.dim() > 1:  # a diagonal Gaussian: one term per action dimension
            kl = kl.sum(dim=-1)
        value = float(kl.mean())
        rate = self.schedule.update(value)
        self.history.append((int(self.model.num_timesteps), rate, value))
        self.logger.record("finetune/learning_rate", rate)
        self.logger.record("finetune/update_kl", value)
        self._old = None

    def _distribution(self) -> torch.distributions.Distribution:
        with torch.no_grad():
            dist = self.model.policy.get_distribution(self._obs)  # type: ignore[operator]
        inner = dist.distribution
        if isinstance(inner, torch.distributions.Normal):
            return torch.distributions.Normal(inner.loc.clone(), inner.scale.clone())
        if isinstance(inner, torch.distributions.Categorical):
            return torch.distributions.Categorical(logits=inner.logits.clone())
        raise TypeError(f"adaptive rate: {type(inner).__name__} action distributions are not supported")

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps: the rate reached and its history."""
        return {"rate": self.schedule.rate, "history": [list(h) for h in self.history]}

    def load(self, state: dict[str, Any]) -> None:
        self.schedule.rate = float(state["rate"])
        self.history = [(int(s), float(r), float(k)) for s, r, k in state["history"]]
