"""ResNet-18 in plain torch with torchvision's state-dict key names, weights from a user-supplied file.

Nothing is downloaded: pass the path of a local state dict (for instance torchvision's
``resnet18-f37072fd.pth``, fetched once by the user) or ``None`` for a random init. The module layout
(``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer2.0.downsample.0``, ``fc``) matches torchvision so such a
file loads with ``strict=True``. Input: torchvision's ImageNet mean/std on [0, 1] RGB.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from agents.backbones.base import IMAGENET_MEAN, IMAGENET_STD, Backbone, WeightsPath, load_weights_file

STAGE_CHANNELS = (64, 128, 256, 512)
BLOCKS_PER_STAGE = 2


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual; a 1x1 strided ``downsample`` when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        skip = x if self.downsample is None else self.downsample(x)
        return F.relu(y + skip)


class ResNet18(Backbone):
    """ResNet-18 trunk + ImageNet classifier.

    Taps: ``stem`` (conv1/bn/relu/maxpool, 64 ch, /4), ``layer1``..``layer4`` (64..512 ch, /4../32;
    ``layer4`` is the default). Blocks: ``stem``, ``layer1.0``, ``layer1.1``, ..., ``layer4.1``.
    """

    input_mean = IMAGENET_MEAN
    input_std = IMAGENET_STD
    default_image_size = 224
    default_tap = "layer4"

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.stages = [("stem", ["stem"])]
        in_channels = 64
        for index, channels in enumerate(STAGE_CHANNELS, start=1):
            stride = 1 if index == 1 else 2
            layer = nn.Sequential(
                *(
                    BasicBlock(in_channels if b == 0 else channels, channels, stride if b == 0 else 1)
                    for b in range(BLOCKS_PER_STAGE)
                )
            )
            setattr(self, f"layer{index}", layer)
            self.stages.append((f"layer{index}", [f"layer{index}.{b}" for b in range(BLOCKS_PER_STAGE)]))
            in_channels = channels
        self.fc = nn.Linear(STAGE_CHANNELS[-1], num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def block_paths(self, block: str) -> list[str]:
        return ["conv1", "bn1"] if block == "stem" else [block]

    def run_block(self, block: str, x: torch.Tensor) -> torch.Tensor:
        if block == "stem":
            return F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, stride=2, padding=1)
        module: nn.Module = self.get_submodule(block)
        return module(x)

    def tap_channels(self, tap: str) -> int:
        name = self.resolve_tap(tap)
        return 64 if name == "stem" else STAGE_CHANNELS[int(name[-1]) - 1]

    def classifier_paths(self) -> list[str]:
        return ["fc"]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet class logits for input normalized with ``input_mean`` / ``input_std``."""
        return self.fc(self.forward_to(x, "layer4").mean(dim=(2, 3)))


def resnet18(weights: WeightsPath | None) -> ResNet18:
    """ResNet-18 from a local torchvision-style state dict, or randomly initialized when ``weights`` is None.

    There are no packaged weights: ``"imagenet"`` is refused with a message saying what to pass instead.
    """
    if weights == "imagenet":
        raise ValueError(
            "resnet18 has no packaged ImageNet weights and nothing is downloaded; pass the path of a local "
            "torchvision-style state dict (e.g. resnet18-f37072fd.pth) or weights=None for a random init"
        )
    model = ResNet18()
    if weights is not None:
        load_weights_file(model, weights, "ResNet-18")
    return model
