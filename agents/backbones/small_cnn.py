"""A NatureCNN-like small CNN (Mnih et al. 2015), trained from scratch, optionally loaded from a local file.

Same layers as SB3's ``NatureCNN`` (8x8/4, 4x4/2, 3x3/1 convs, 32-64-64 channels) but exposed as a
:class:`Backbone` so it plugs into the same extractor, taps and freezing as the pretrained trunks. It
expects plain [0, 1] input (mean 0, std 1) and needs a side of at least 36 pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from agents.backbones.base import Backbone, WeightsPath, load_weights_file

# (name, out channels, kernel, stride)
LAYERS: tuple[tuple[str, int, int, int], ...] = (
    ("conv1", 32, 8, 4),
    ("conv2", 64, 4, 2),
    ("conv3", 64, 3, 1),
)


class SmallCNN(Backbone):
    """Three conv + ReLU blocks; taps and blocks are ``conv1``, ``conv2``, ``conv3`` (the default)."""

    default_image_size = 84
    default_tap = "conv3"

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self._channels: dict[str, int] = {}
        for name, out_channels, kernel, stride in LAYERS:
            setattr(self, name, nn.Conv2d(in_channels, out_channels, kernel, stride=stride))
            self.stages.append((name, [name]))
            self._channels[name] = out_channels
            in_channels = out_channels

    def block_paths(self, block: str) -> list[str]:
        return [block]

    def run_block(self, block: str, x: torch.Tensor) -> torch.Tensor:
        conv: nn.Module = self.get_submodule(block)
        return F.relu(conv(x))

    def tap_channels(self, tap: str) -> int:
        return self._channels[self.resolve_tap(tap)]


def small_cnn(weights: WeightsPath | None) -> SmallCNN:
    """A randomly initialized SmallCNN, or one loaded from a local state-dict file."""
    if weights == "imagenet":
        raise ValueError(
            "small_cnn is trained from scratch and has no ImageNet weights; pass None or a local path"
        )
    model = SmallCNN()
    if weights is not None:
        load_weights_file(model, weights, "SmallCNN")
    return model
