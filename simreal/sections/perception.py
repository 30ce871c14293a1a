"""The `perception:` section: the image backbone a pixel policy reads through, and how it is used.

`simreal.training.engine.perception.attach` builds what this section describes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from agents.backbones import BACKBONES, build_backbone
from simreal.schema import Spec

DEFAULT_FEATURES_DIM = 128
DEFAULT_KEYPOINTS = 16


class AugmentationConfig(Spec):
    """Image augmentation of training batches (DrQ shift, crop, colour jitter); never when acting."""

    shift_pad: int = Field(default=4, ge=0)
    """DrQ shift: pad by this many pixels, then crop back at a random offset (0: off)."""
    crop_size: int | None = Field(default=None, ge=8)
    """Side of a random square crop in pixels, resized back to the frame size (None: off)."""
    brightness: float = Field(default=0.0, ge=0, le=1)
    """Brightness jitter: a factor drawn from U[1 - s, 1 + s] per sample (0: off)."""
    contrast: float = Field(default=0.0, ge=0, le=1)
    """Contrast jitter strength, as for `brightness` (0: off)."""
    saturation: float = Field(default=0.0, ge=0, le=1)
    """Saturation jitter strength, as for `brightness` (0: off)."""
    seed: int = 0
    """Seed of the augmentation's own random generator."""


class PerceptionConfig(Spec):
    """The image backbone and how it is used (keys are `BackboneExtractor` arguments)."""

    backbone: str = "efficientnet_lite0"
    """Image backbone by name (`agents.backbones.BACKBONES`: efficientnet_lite0, resnet18, small_cnn)."""
    weights: str | None = "imagenet"
    """`imagenet`: its ImageNet weights; a path: a local state-dict file; None: a random init."""
    init_seed: int = 0
    """Torch seed a cached backbone is built with, so a random init is the same for every seed and variant."""
    tap: str | None = None
    """Backbone layer whose output is read (one of its tap names; None: the last before the classifier)."""
    features_dim: int | None = Field(default=None, ge=1)
    """Output of the projection: 128 when left out; with `projection: keypoints` it is 2 x keypoints x
    frames and cannot be set."""
    pool: int = Field(default=1, ge=1, le=8)
    """Side of each frame's average-pooling grid (1: global pooling, which loses where things are)."""
    unfreeze_last: int = Field(default=0, ge=0)
    """Last backbone blocks before `tap` that train too (0: all frozen)."""
    backbone_lr_factor: float = Field(default=0.1, gt=0)
    """Learning rate of the unfrozen backbone blocks, as a factor of the policy's."""
    image_size: int | None = Field(default=None, ge=16)
    """Side frames are resized to (bilinear) before the backbone (None: as observed)."""
    projection: Literal["relu", "layernorm", "keypoints"] = "relu"
    """Trainable head: Linear -> ReLU, Linear -> LayerNorm -> Tanh, or spatial-softmax keypoints."""
    keypoints: int | None = Field(default=None, ge=1)
    """With `projection: keypoints`: the (x, y) positions read from each frame's grid (16 when left out)."""
    readout: Literal["stack", "diff"] = "stack"
    """How stacked frames' features reach the projection: as they are, or the newest plus differences."""
    cache_features: bool = True
    """Compute the frozen features once per env step, outside the policy (buffers hold features)."""
    adabn_frames: int = Field(default=0, ge=0)
    """AdaBN: re-estimate BatchNorm statistics on this many target frames before fine-tuning (0: off)."""
    augmentation: AugmentationConfig | None = None
    """Augmentation of training batches (needs `cache_features: false`; None: none)."""

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
    def _weights_exist(cls, value: str | None, info: ValidationInfo) -> str | None:
        """A weights file is relative to the config file that names it (kept absolute from then on)."""
        if value in (None, "imagenet"):
            return value
        path = Path(value)
        base = (info.context or {}).get("base_dir")
        if not path.is_absolute() and base is not None:
            path = Path(base) / path
        if not path.is_file():
            raise ValueError(f"weights file {value} not found (allowed: imagenet, null, or a local file)")
        return str(path)

    def check(self, exp: Any) -> None:
        """A backbone reads images: the experiment must observe through the task's camera."""
        if not exp.pixels:
            raise ValueError("perception: a CNN backbone needs image observations (set pixels: true)")

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
