"""How image observations reach the policy: a pretrained CNN backbone, frozen, cached or in the policy.

`PerceptionConfig` is the experiment's `perception:` section. `attach` turns a vec env of images into
what the policy trains on and returns an `Encoder` with the matching SB3 `policy_kwargs`:

- `cache_features: true` (default): the frozen backbone runs once per env step inside the vec env
  (`simreal.training.features.VecFrozenFeatures`); rollout and replay buffers hold features, the policy's
  features extractor is only the trainable head.
- `cache_features: false`: the whole `BackboneExtractor` sits in the policy (frozen parts under
  no_grad), so the backbone runs again for every minibatch - slower, but needed when images must be
  augmented at training time.

The frozen backbone's state (its weights and BatchNorm statistics, e.g. after AdaBN) is saved with the
policy artifact, so a random-init or target-adapted backbone is rebuilt exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from gymnasium import spaces
from pydantic import Field, ValidationInfo, field_validator, model_validator
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from agents.backbones import BACKBONES, build_backbone
from agents.extractors import BackboneExtractor
from agents.heads import DictBackboneExtractor
from simreal.schema import Spec
from simreal.simulation.pixels import IMAGE_KEY
from simreal.training.evaluation import stack
from simreal.training.features import VecFrozenFeatures, cache_frozen_features

DEFAULT_FEATURES_DIM = 128
DEFAULT_KEYPOINTS = 16


class AugmentationConfig(Spec):
    """Image augmentation of training batches (DrQ shift, crop, colour jitter); never when acting."""

    shift_pad: int = Field(default=4, ge=0)
    crop_size: int | None = Field(default=None, ge=8)
    brightness: float = Field(default=0.0, ge=0, le=1)
    contrast: float = Field(default=0.0, ge=0, le=1)
    saturation: float = Field(default=0.0, ge=0, le=1)
    seed: int = 0


class PerceptionConfig(Spec):
    """The image backbone and how it is used (keys are `BackboneExtractor` arguments)."""

    backbone: str = "efficientnet_lite0"
    weights: str | None = "imagenet"
    init_seed: int = 0
    tap: str | None = None
    features_dim: int | None = Field(default=None, ge=1)
    """Output of the projection: 128 when left out; with `projection: keypoints` it is 2 x keypoints x
    frames and cannot be set."""
    pool: int = Field(default=1, ge=1, le=8)
    unfreeze_last: int = Field(default=0, ge=0)
    backbone_lr_factor: float = Field(default=0.1, gt=0)
    image_size: int | None = Field(default=None, ge=16)
    projection: Literal["relu", "layernorm", "keypoints"] = "relu"
    keypoints: int | None = Field(default=None, ge=1)
    """With `projection: keypoints`: the (x, y) positions read from each frame's grid (16 when left out)."""
    readout: Literal["stack", "diff"] = "stack"
    """How stacked frames' features reach the projection: as they are, or the newest plus differences."""
    cache_features: bool = True
    adabn_frames: int = Field(default=0, ge=0)
    augmentation: AugmentationConfig | None = None

    @model_validator(mode="after")
    def _augment_needs_images(self) -> PerceptionConfig:
        if self.augmentation is not None and self.cache_features:
            raise ValueError(
                "augmentation: needs the images at training time; set cache_features: false "
                "(cached features are computed once, before any augmentation could apply)"
            )
        return self

    @model_validator(mode="after")
    def _keypoints_layout(self) -> PerceptionConfig:
        if self.projection == "keypoints":
            if self.pool < 2:
                raise ValueError(
                    f"pool: {self.pool} leaves no positions for projection: keypoints (allowed: 2..8)"
                )
            if self.readout != "stack":
                raise ValueError(
                    "readout: diff with projection: keypoints, which reads each frame's grid and computes "
                    "the keypoints' motion itself (allowed: stack)"
                )
            if self.features_dim is not None:
                raise ValueError(
                    "features_dim: projection: keypoints outputs 2 x keypoints x frames features "
                    "(allowed: leave features_dim out, set perception.keypoints)"
                )
        elif self.keypoints is not None:
            raise ValueError(f"keypoints: only with projection: keypoints (projection is {self.projection})")
        return self

    @field_validator("tap")
    @classmethod
    def _known_tap(cls, value: str | None, info: ValidationInfo) -> str | None:
        backbone = info.data.get("backbone")
        if value is not None and backbone is not None:  # an unknown backbone is reported on its own
            allowed = build_backbone(backbone, None).tap_names()  # a random init: only the layout
            if value not in allowed:
                raise ValueError(f"unknown tap {value!r} for {backbone} (allowed: {', '.join(allowed)})")
        return value

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str) -> str:
        if value not in BACKBONES:
            raise ValueError(f"unknown backbone {value!r} (allowed: {', '.join(sorted(BACKBONES))})")
        return value

    @field_validator("weights")
    @classmethod
    def _weights_exist(cls, value: str | None) -> str | None:
        if value not in (None, "imagenet") and not Path(value).is_file():
            raise ValueError(f"weights file {value} not found (allowed: imagenet, null, or a local file)")
        return value

    def extractor_kwargs(self) -> dict[str, Any]:
        return {
            "backbone": self.backbone,
            "weights": self.weights,
            "tap": self.tap,
            "features_dim": self.features_dim or DEFAULT_FEATURES_DIM,
            "pool": self.pool,
            "frozen": True,
            "unfreeze_last": self.unfreeze_last,
            "image_size": self.image_size,
            "projection": self.projection,
            "readout": self.readout,
            "keypoints": self.keypoints or DEFAULT_KEYPOINTS,
            "augmentation": self.augmentation.model_dump() if self.augmentation else None,
        }


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
