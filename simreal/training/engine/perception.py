"""How image observations reach the policy: a pretrained CNN backbone, frozen, cached or in the policy.

`attach` turns a vec env of images into what the policy trains on and returns an `Encoder` with the
matching SB3 `policy_kwargs`:

- `cache_features: true` (default): the frozen backbone runs once per env step inside the vec env
  (`simreal.training.engine.features.VecFrozenFeatures`); rollout and replay buffers hold features,
  the policy's features extractor is only the trainable head.
- `cache_features: false`: the whole `BackboneExtractor` sits in the policy (frozen parts under
  no_grad), so the backbone runs again for every minibatch - slower, but needed when images must be
  augmented at training time.

The frozen backbone's state (its weights and BatchNorm statistics, e.g. after AdaBN) is saved with the
policy artifact, so a random-init or target-adapted backbone is rebuilt exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from agents.extractors import BackboneExtractor
from agents.heads import DictBackboneExtractor
from simreal.sections.perception import PerceptionConfig
from simreal.simulation.pixels import IMAGE_KEY
from simreal.training.engine.features import VecFrozenFeatures, cache_frozen_features, stack


@dataclass
class Encoder:
    """What a stage needs to build its policy and to evaluate it on raw env observations."""

    policy_kwargs: dict[str, Any]
    cached: VecFrozenFeatures | None = None

    def encode(self, obs: Any) -> Any:
        """One env observation (an image, or a Dict) -> what the policy reads (identity unless features
        are cached)."""
        if self.cached is None:
            return obs
        batch = {k: np.asarray(v)[None] for k, v in obs.items()} if isinstance(obs, dict) else obs[None]
        return self.cached.observe(batch)[0]

    def batch(self) -> Encoding:
        """An encoding of observation batches (one row per env) that reuses frames between calls."""
        return Encoding(self.cached)

    def images(self, obs: Any) -> np.ndarray:
        """The image of one env observation (itself, or a Dict's "image" entry)."""
        return np.asarray(obs[IMAGE_KEY] if isinstance(obs, dict) else obs)

    def backbone_state(self) -> dict[str, torch.Tensor] | None:
        return None if self.cached is None else self.cached.extractor.state_dict()

    def load_backbone_state(self, state: dict[str, torch.Tensor] | None) -> None:
        if self.cached is not None and state is not None:
            self.cached.extractor.load_state_dict(state)
            self.cached.invalidate()


class Encoding:
    """What the policy reads for a batch of env observations, one per env, step after step.

    `previous[m]` is the row the same env's observation had in the last call (None after a reset): with
    stacked frames and cached features, frames encoded at the last call are not encoded again (as in
    `VecFrozenFeatures`), and the batch goes through the backbone at once."""

    def __init__(self, cached: VecFrozenFeatures | None) -> None:
        self.cached = cached
        self._last: tuple[np.ndarray, np.ndarray] | None = None

    def __call__(self, observations: list[Any], previous: list[int | None]) -> Any:
        batch = stack(observations)
        if self.cached is None:
            return batch
        images = np.asarray(batch[IMAGE_KEY] if isinstance(batch, dict) else batch)
        rows = self.cached.encode_frames(images, previous, self._last)
        if self.cached.reuses:
            self._last = (images, rows)
        return self.cached.joined(self.cached.features(rows), batch)


def env_space(venv: VecEnv) -> Any:
    """The observation space of the envs under `venv`: images, before cached features replace them
    (and before any normalization of those features)."""
    if isinstance(venv, VecNormalize):
        venv = venv.venv
    return venv.venv.observation_space if isinstance(venv, VecFrozenFeatures) else venv.observation_space


def attach(cfg: PerceptionConfig | None, venv: VecEnv, device: torch.device) -> tuple[VecEnv, Encoder]:
    """Wrap `venv` for `cfg` (unchanged without perception) and return the policy's encoder."""
    if cfg is None:
        return venv, Encoder({})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.init_seed)  # a random-init backbone is the same for every seed and variant
        if cfg.cache_features:
            wrapped, policy_kwargs = cache_frozen_features(venv, device, **cfg.extractor_kwargs())
            return wrapped, Encoder(policy_kwargs, wrapped)
        dict_obs = isinstance(venv.observation_space, spaces.Dict)
        kwargs = {
            "features_extractor_class": DictBackboneExtractor if dict_obs else BackboneExtractor,
            "features_extractor_kwargs": cfg.extractor_kwargs(),
        }
        return venv, Encoder(kwargs)
