"""Features extractors of a teacher that sees privileged information and of a student that infers it.

Both produce `[observation, z]`: the teacher's z is an environment-factor encoding of the privileged
values (RMA's phase 1, Kumar et al. 2021), the student's an estimate of the same z from its recent
observations and actions (RMA's adaptation module). With the same layout the student can take the
teacher's policy head as it is, and distillation has two targets: the teacher's actions and its z.

    policy_kwargs = dict(features_extractor_class=PrivilegedExtractor,
                         features_extractor_kwargs={"obs_dim": 4, "latent_dim": 8})
    teacher = PPO("MlpPolicy", Privileged(env), policy_kwargs=policy_kwargs)

Both read flat observations (`[obs, priv]` and `[obs, window]`), so observation normalization and the
ONNX export treat them like any other policy.
"""

from __future__ import annotations

from typing import Literal

import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

Encoder = Literal["conv", "gru"]


def _mlp(inputs: int, hidden: list[int], out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(inputs, width), nn.ELU()]
        inputs = width
    return nn.Sequential(*layers, nn.Linear(inputs, out), nn.Tanh())


class LatentExtractor(BaseFeaturesExtractor):
    """`[obs, extra]` -> `[obs, z]`, with `z = latent(observations)` (tanh-bounded, `latent_dim` values)."""

    obs_dim: int
    latent_dim: int

    def latent(self, observations: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return torch.cat([observations[:, : self.obs_dim], self.latent(observations)], dim=1)


class PrivilegedExtractor(LatentExtractor):
    """The teacher's: `z = encoder(priv)`, `priv` being everything after the first `obs_dim` values."""

    def __init__(
        self,
        observation_space: spaces.Box,
        obs_dim: int,
        latent_dim: int = 8,
        hidden: list[int] | None = None,
    ) -> None:
        super().__init__(observation_space, features_dim=obs_dim + latent_dim)
        total = int(observation_space.shape[0])
        if total <= obs_dim:
            raise ValueError(f"PrivilegedExtractor: {total} inputs hold no privileged values after {obs_dim}")
        self.obs_dim, self.latent_dim = obs_dim, latent_dim
        self.encoder = _mlp(total - obs_dim, hidden if hidden is not None else [64], latent_dim)

    def latent(self, observations: torch.Tensor) -> torch.Tensor:
        return self.encoder(observations[:, self.obs_dim :])


class HistoryExtractor(LatentExtractor):
    """The student's: the window of the last `steps` (observation, action) pairs through a small 1-D
    convolution over time (or a GRU) to `latent_dim` values, an estimate of the teacher's z."""

    def __init__(
        self,
        observation_space: spaces.Box,
        obs_dim: int,
        step_dim: int,
        steps: int,
        latent_dim: int = 8,
        encoder: Encoder = "conv",
        channels: int = 32,
    ) -> None:
        super().__init__(observation_space, features_dim=obs_dim + latent_dim)
        expected = obs_dim + steps * step_dim
        if observation_space.shape != (expected,):
            raise ValueError(
                f"HistoryExtractor: expected a flat observation of {expected}, got {observation_space.shape}"
            )
        self.obs_dim, self.step_dim, self.steps, self.kind = obs_dim, step_dim, steps, encoder
        self.latent_dim = latent_dim
        if encoder == "gru":
            self.rnn = nn.GRU(step_dim, channels, batch_first=True)
            width = channels
        else:
            first = min(3, steps)
            second = min(3, steps - first + 1)
            self.conv = nn.Sequential(
                nn.Conv1d(step_dim, channels, first),
                nn.ELU(),
                nn.Conv1d(channels, channels, second, stride=2 if steps - first + 1 > 4 else 1),
                nn.ELU(),
                nn.Flatten(),
            )
            with torch.no_grad():
                width = int(self.conv(torch.zeros(1, step_dim, steps)).shape[1])
        self.head = nn.Sequential(nn.Linear(width, latent_dim), nn.Tanh())

    def latent(self, observations: torch.Tensor) -> torch.Tensor:
        window = observations[:, self.obs_dim :].reshape(-1, self.steps, self.step_dim)
        if self.kind == "gru":
            _, hidden = self.rnn(window)
            return self.head(hidden[-1])
        return self.head(self.conv(window.transpose(1, 2)))
