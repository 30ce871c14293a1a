"""A multi-task actor-critic: a shared trunk, shared or per-task action heads, and a loss that ignores the
padded action components of each task.

The tasks share one observation and action space (padded; `simreal.simulation.multitask`). Which task an
observation comes from is read from its one-hot id (`task_slice`: where the id sits in the observation;
None: one task, or tasks that all use every action component). `action_masks[t]` marks task t's own
action components: the log-probability and the entropy sum over those only, so a padded component -
which never reaches the env - gets no gradient, neither in its head's row nor in its log-std. With
`heads: per_task` each task has its own output layer (the mean action); a batch computes only the heads
of the tasks in it, so the others receive no gradient at all (not even a zero one: their optimizer state
does not move them).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from stable_baselines3.common.distributions import DiagGaussianDistribution, Distribution
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn


class TaskHeads(nn.Module):
    """One linear output layer per task; each row of a batch goes through its task's."""

    def __init__(self, latent_dim: int, action_dim: int, tasks: int) -> None:
        super().__init__()
        self.heads = nn.ModuleList(nn.Linear(latent_dim, action_dim) for _ in range(tasks))

    def forward(self, latent: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        heads: list[nn.Linear] = list(self.heads)  # type: ignore[arg-type]
        out = latent.new_zeros((latent.shape[0], heads[0].out_features))
        for t in torch.unique(task_ids).tolist():
            rows = task_ids == t
            out = out.index_put((rows,), heads[int(t)](latent[rows]))
        return out


class MultiTaskPolicy(ActorCriticPolicy):
    """SB3's `ActorCriticPolicy` with task ids read from the observation, masked action components and
    optional per-task heads (Gaussian actions: PPO, A2C)."""

    def __init__(
        self,
        *args: Any,
        action_masks: list[list[float]] | None = None,
        task_slice: list[int] | None = None,
        heads: str = "shared",
        **kwargs: Any,
    ) -> None:
        self._masks = action_masks
        self.task_slice = tuple(task_slice) if task_slice else None
        self.heads_mode = heads
        super().__init__(*args, **kwargs)
        if not isinstance(self.action_dist, DiagGaussianDistribution):
            raise ValueError("MultiTaskPolicy: Box actions with a Gaussian policy (PPO, A2C) only")
        dim = int(np.prod(self.action_space.shape))  # type: ignore[arg-type]
        masks = torch.tensor(action_masks or [[1.0] * dim], dtype=torch.float32)
        self.register_buffer("action_masks", masks)

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        if self.heads_mode == "per_task":
            tasks = len(self._masks or [[1.0]])
            dim = int(np.prod(self.action_space.shape))  # type: ignore[arg-type]
            heads = TaskHeads(self.mlp_extractor.latent_dim_pi, dim, tasks)
            if self.ortho_init:
                heads.apply(lambda m: self.init_weights(m, gain=0.01))
            self.action_net = heads
            self.optimizer = self.optimizer_class(
                self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs
            )  # type: ignore[call-arg]

    def task_ids(self, obs: Any) -> torch.Tensor:
        """Each row's task: the position of its one-hot id (0 without one)."""
        if self.task_slice is None:
            return torch.zeros(obs.shape[0], dtype=torch.long, device=obs.device)
        start, stop = self.task_slice
        return obs[:, start:stop].argmax(dim=1)

    def _distribution(self, latent_pi: torch.Tensor, ids: torch.Tensor) -> Distribution:
        if isinstance(self.action_net, TaskHeads):
            mean = self.action_net(latent_pi, ids)
        else:
            mean = self.action_net(latent_pi)
        return self.action_dist.proba_distribution(mean, self.log_std)

    def _mask(self, ids: torch.Tensor) -> torch.Tensor:
        masks: torch.Tensor = self.action_masks  # type: ignore[assignment]
        return masks[ids.clamp(max=masks.shape[0] - 1)] if masks.shape[0] > 1 else masks.expand(len(ids), -1)

    @staticmethod
    def _normal(dist: Distribution) -> torch.distributions.Normal:
        normal = getattr(dist, "distribution", None)
        assert isinstance(normal, torch.distributions.Normal)
        return normal

    def _latents(self, obs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        features: Any = self.extract_features(obs)
        if self.share_features_extractor:
            return self.mlp_extractor(features)
        pi_features, vf_features = features
        return self.mlp_extractor.forward_actor(pi_features), self.mlp_extractor.forward_critic(vf_features)

    def forward(
        self, obs: Any, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        latent_pi, latent_vf = self._latents(obs)
        ids = self.task_ids(obs)
        dist = self._distribution(latent_pi, ids)
        actions = dist.get_actions(deterministic=deterministic)
        log_prob = (self._normal(dist).log_prob(actions) * self._mask(ids)).sum(dim=1)
        return actions.reshape((-1, *self.action_space.shape)), self.value_net(latent_vf), log_prob  # type: ignore[misc]

    def evaluate_actions(
        self, obs: Any, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        latent_pi, latent_vf = self._latents(obs)
        ids = self.task_ids(obs)
        dist = self._distribution(latent_pi, ids)
        mask = self._mask(ids)
        normal = self._normal(dist)
        log_prob = (normal.log_prob(actions) * mask).sum(dim=1)
        entropy = (normal.entropy() * mask).sum(dim=1)
        return self.value_net(latent_vf), log_prob, entropy

    def get_distribution(self, obs: Any) -> Distribution:
        features: Any = super().extract_features(obs, self.pi_features_extractor)
        latent_pi = self.mlp_extractor.forward_actor(features)
        return self._distribution(latent_pi, self.task_ids(obs))

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(action_masks=self._masks, task_slice=self.task_slice, heads=self.heads_mode)
        return data
