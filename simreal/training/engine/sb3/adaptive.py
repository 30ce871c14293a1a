"""The KL that steers `schedules.AdaptiveRate`, measured on SB3's own rollouts.

After each rollout (before the update) the policy's action distribution on a sample of the rollout's
observations is kept; at the next rollout start (after the update) the new distribution on the same
observations gives KL(old || new), the rate moves, and both go to TensorBoard (`finetune/learning_rate`,
`finetune/update_kl`). Works for any on-policy SB3 algorithm (PPO, A2C), whether or not it reports an
`approx_kl` of its own.

Off-policy algorithms (SAC, TD3) update at every step, so there is no rollout to measure one update by:
`OffPolicyKLRate` takes the policy's change over a window of `finetune.kl_window` target steps instead,
on observations drawn from the replay buffer when the window opens. SAC's policy is its squashed
Gaussian: the KL is taken on the Gaussian before the tanh (the squashing is the same bijection on both
sides, so the KL is the same). TD3's policy is deterministic; what it explores with is a Gaussian around
its action (its action noise's std, or its target-smoothing noise's when it has none), so the KL is
that Gaussian's: |mean change|^2 / (2 std^2) per dimension. The rate moves the actor's, the critics' and
(SAC) the entropy coefficient's optimizers together, as SB3's one schedule does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
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
        self.clock = 0
        """Added to the model's step count in `history`: a `finetune.auto` candidate counts its own steps,
        the history the stage's (what every candidate spent before it), so one clock runs through."""
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
        if self._old is not None:
            self._measure()

    def settle(self) -> None:
        """Measure the update a `learn()` ended with (SB3 updates after the last rollout and stops): a
        `finetune.auto` candidate's round ends there, and its next round - or the winner's continuation -
        starts from the rate that update earned."""
        if self._old is not None:
            self._measure()

    def _measure(self) -> None:
        """KL(old || new) on the kept observations; the rate moves and both go to TensorBoard."""
        assert self._old is not None
        new = self._distribution()
        kl = torch.distributions.kl_divergence(self._old, new)
        if kl.dim() > 1:  # a diagonal Gaussian: one term per action dimension
            kl = kl.sum(dim=-1)
        value = float(kl.mean())
        rate = self.schedule.update(value)
        self.history.append((int(self.model.num_timesteps) + self.clock, rate, value))
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


class OffPolicyKLRate(KLAdaptiveRate):
    """`KLAdaptiveRate` for SAC and TD3: the KL of the policy's change over each window of `window` target
    steps after the first update, on up to `SAMPLE` replay observations drawn when the window opens."""

    def __init__(self, schedule: AdaptiveRate, window: int, seed: int = 0) -> None:
        super().__init__(schedule, seed)
        self.window = window
        self._opened = 0

    def _on_step(self) -> bool:
        model: Any = self.model
        now = int(model.num_timesteps)
        if now <= model.learning_starts:  # no update yet: nothing has moved the policy
            return True
        if self._old is None:
            self._obs = self._replay_sample(now)
            self._old = self._distribution()
            self._opened = now
        elif now - self._opened >= self.window:
            self._measure()  # closes the window: the next step opens another
        return True

    def _on_rollout_end(self) -> None:  # SB3 calls these around every step: the windows decide instead
        return None

    def settle(self) -> None:  # a window spans rounds: it closes at its length, not when a round ends
        return None

    def _on_rollout_start(self) -> None:
        return None

    def _replay_sample(self, now: int) -> Any:
        model: Any = self.model
        buffer = model.replay_buffer
        stored = (buffer.buffer_size if buffer.full else buffer.pos) * buffer.n_envs
        rng = np.random.default_rng([self.seed, now])  # its own draws: training's random stream untouched
        rows = rng.choice(stored, size=min(SAMPLE, stored), replace=False)
        obs = buffer.observations
        flat = (
            {k: v.reshape(-1, *v.shape[2:])[rows] for k, v in obs.items()}
            if isinstance(obs, dict)
            else obs.reshape(-1, *obs.shape[2:])[rows]
        )
        if model._vec_normalize_env is not None:  # stored as observed; the policy reads them normalized
            flat = model._vec_normalize_env.normalize_obs(flat)
        return obs_as_tensor(flat, model.device)

    def _distribution(self) -> torch.distributions.Distribution:
        actor: Any = self.model.actor  # type: ignore[attr-defined]
        with torch.no_grad():
            if hasattr(actor, "get_action_dist_params"):  # SAC: the Gaussian under the tanh
                mean, log_std, _ = actor.get_action_dist_params(self._obs)
                return torch.distributions.Normal(mean.clone(), log_std.exp().clone())
            action = actor(self._obs)
        std = torch.as_tensor(exploration_std(self.model), dtype=action.dtype, device=action.device)
        return torch.distributions.Normal(action.clone(), std.expand_as(action).clone())


def exploration_std(model: Any) -> Any:
    """TD3's exploration as a Gaussian std in its scaled [-1, 1] actions: its Gaussian action noise, else
    the noise it smooths its target policy with."""
    noise = model.action_noise
    if isinstance(noise, NormalActionNoise):
        return noise._sigma  # SB3 keeps the std only there
    return float(model.target_policy_noise)


def rate_callback(model: BaseAlgorithm, window: int, seed: int) -> KLAdaptiveRate | None:
    """The callback that steers `model`'s rate where it is an `AdaptiveRate` (None where it is not):
    per update for on-policy algorithms, per `window` target steps for off-policy ones."""
    rate = model.learning_rate
    if not isinstance(rate, AdaptiveRate):
        return None
    if isinstance(model, OffPolicyAlgorithm):
        return OffPolicyKLRate(rate, window, seed)
    return KLAdaptiveRate(rate, seed)
