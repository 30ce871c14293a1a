"""Pretrained and from-scratch CNN backbones behind one contract (:class:`Backbone`) and one registry.

``weights`` is always explicit: ``"imagenet"`` (weights shipped in an installed package; EfficientNet-Lite0
only), the path of a local state-dict file, or ``None`` for a random init. Nothing is ever downloaded.

Example::

    net = build_backbone("efficientnet_lite0", weights="imagenet")
    net.tap_names()      # ['stem', 'stage1', ..., 'stage7', 'head']
    net.input_mean       # the normalization its weights expect
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agents.backbones.base import IMAGENET_MEAN, IMAGENET_STD, Backbone, WeightsPath, load_weights_file
from agents.backbones.efficientnet_lite import EfficientNetLite0, efficientnet_lite0, packaged_weights_path
from agents.backbones.resnet import ResNet18, resnet18
from agents.backbones.small_cnn import SmallCNN, small_cnn

BACKBONES: dict[str, Callable[..., Backbone]] = {
    "efficientnet_lite0": efficientnet_lite0,
    "resnet18": resnet18,
    "small_cnn": small_cnn,
}


def build_backbone(name: str, weights: WeightsPath | None, **kwargs: Any) -> Backbone:
    """Build registered backbone ``name`` with ``weights``: "imagenet", a local path, or None (random)."""
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone {name!r}; allowed: {sorted(BACKBONES)}")
    return BACKBONES[name](weights, **kwargs)


__all__ = [
    "BACKBONES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Backbone",
    "EfficientNetLite0",
    "ResNet18",
    "SmallCNN",
    "WeightsPath",
    "build_backbone",
    "efficientnet_lite0",
    "load_weights_file",
    "packaged_weights_path",
    "resnet18",
    "small_cnn",
]
