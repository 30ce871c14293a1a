"""The contract every CNN backbone meets: ordered named taps, a block list, its input normalization.

A backbone is a CNN trunk cut into ordered *stages*; the output of a stage is a *tap*. Each stage is made
of *blocks*, the units a caller counts when it unfreezes "the last N blocks". Subclasses keep the module
names of their reference implementation so that published state dicts load with ``strict=True``; the
stage/block layout is a separate, explicit description on top of those modules.

Example::

    net = build_backbone("resnet18", weights=None)
    net.tap_names()                      # ['stem', 'layer1', 'layer2', 'layer3', 'layer4']
    net.blocks("layer2")[-1]             # 'layer2.1'
    fmap = net.forward_to(x, "layer2")   # (N, 128, H/8, W/8)
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

import torch
from torch import nn

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

WeightsPath = str | os.PathLike[str]


class Backbone(nn.Module, ABC):
    """A CNN trunk with ordered named taps, a per-tap block list, and the input statistics it expects.

    Subclasses set the four class-level facts below and describe their layout in ``self.stages``:
    an ordered list of ``(tap name, [block names])``. A block name maps to module paths
    (``block_paths``) and to a forward step (``run_block``).
    """

    #: Per-channel mean/std of [0, 1] RGB input that the pretrained weights were trained with.
    input_mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    input_std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    #: Square input side the weights were trained at.
    default_image_size: int = 224
    #: The tap used when a caller names none: the last stage before the classifier.
    default_tap: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.stages: list[tuple[str, list[str]]] = []
        self._pruned_after: str | None = None

    # ----- layout, implemented by each backbone -----

    @abstractmethod
    def block_paths(self, block: str) -> list[str]:
        """Dotted module paths (state-dict prefixes) that hold this block's parameters and buffers."""

    @abstractmethod
    def run_block(self, block: str, x: torch.Tensor) -> torch.Tensor:
        """Apply one block (its modules and activation) to ``x``."""

    @abstractmethod
    def tap_channels(self, tap: str) -> int:
        """Number of channels of the feature map at ``tap``."""

    def classifier_paths(self) -> list[str]:
        """Module paths of the classification head, unused by feature extraction."""
        return []

    # ----- generic machinery -----

    def tap_names(self) -> list[str]:
        """Ordered tap names (stage outputs) still available after any ``prune_after``."""
        names = [tap for tap, _ in self.stages]
        if self._pruned_after is not None:
            names = names[: names.index(self._pruned_after) + 1]
        return names

    def resolve_tap(self, tap: str | None) -> str:
        """Return ``tap`` (or the default) after checking it exists; ValueError lists the allowed taps."""
        name = self.default_tap if tap is None else tap
        allowed = self.tap_names()
        if name not in allowed:
            raise ValueError(f"Unknown tap {name!r} for {type(self).__name__}; allowed taps: {allowed}")
        return name

    def blocks(self, tap: str | None = None) -> list[str]:
        """Ordered names of all blocks that run to produce ``tap`` (default tap if None)."""
        name = self.resolve_tap(tap)
        out: list[str] = []
        for stage, stage_blocks in self.stages:
            out.extend(stage_blocks)
            if stage == name:
                break
        return out

    def block_modules(self, block: str) -> list[nn.Module]:
        """The modules of one block (what is frozen, unfrozen or put in eval mode together)."""
        return [self.get_submodule(path) for path in self.block_paths(block)]

    def block_parameters(self, block: str) -> list[nn.Parameter]:
        """The parameters of one block."""
        return [p for module in self.block_modules(block) for p in module.parameters()]

    def forward_blocks(self, x: torch.Tensor, blocks: Sequence[str]) -> torch.Tensor:
        """Run ``blocks`` in order; with ``blocks(tap)`` split in two this is a cacheable prefix/suffix."""
        for block in blocks:
            x = self.run_block(block, x)
        return x

    def forward_to(self, x: torch.Tensor, tap: str | None = None) -> torch.Tensor:
        """Feature map at ``tap`` for normalized RGB input ``x`` of shape (N, 3, H, W)."""
        return self.forward_blocks(x, self.blocks(tap))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map at the default tap."""
        return self.forward_to(x)

    def prune_after(self, tap: str) -> None:
        """Replace every module not needed to compute ``tap`` (later blocks, classifier) by Identity.

        Do this after loading weights: it drops unused parameters from the optimizer and the saved
        state dict, at the price of a state dict that only loads into a backbone pruned the same way.
        """
        keep = set(self.blocks(tap))
        drop: list[str] = list(self.classifier_paths())
        for _, stage_blocks in self.stages:
            drop.extend(
                path for block in stage_blocks if block not in keep for path in self.block_paths(block)
            )
        for path in drop:
            _set_submodule(self, path, nn.Identity())
        self._pruned_after = tap


def _set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    """``root.<path> = module`` for a dotted path (ModuleList indices included)."""
    parent_path, _, name = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    if isinstance(parent, nn.ModuleList):
        parent[int(name)] = module
    else:
        setattr(parent, name, module)


def load_weights_file(module: nn.Module, path: WeightsPath, what: str) -> None:
    """Load a local state-dict file into ``module`` with every key matched (``strict=True``).

    Uses ``torch.load(weights_only=True)``: a plain tensor mapping, no pickled code (SB3 #2281).
    Raises FileNotFoundError naming the path when it does not exist, ValueError when the file is not
    a state dict or its keys/shapes do not match ``what``.
    """
    file = os.fspath(path)
    if not os.path.isfile(file):
        raise FileNotFoundError(f"{what} weights file not found: {file}")
    state = torch.load(file, weights_only=True, map_location="cpu")
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{file} is not a state dict (a mapping of names to tensors) for {what}")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{file} does not match {what}: {err}") from err
