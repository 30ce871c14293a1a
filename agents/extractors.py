"""A stable-baselines3 features extractor around any registered backbone: frozen trunk, trainable head.

Plugs in through ``policy_kwargs`` (composition, not a policy subclass)::

    policy_kwargs = dict(
        features_extractor_class=BackboneExtractor,
        features_extractor_kwargs=dict(backbone="efficientnet_lite0", weights="imagenet", features_dim=256),
    )
    model = PPO("CnnPolicy", env, policy_kwargs=policy_kwargs)

What it receives: SB3 turns uint8 image observations into float CHW in [0, 1] (``VecTransposeImage`` +
``preprocess_obs``). Frame-stacked input (C = 3k) runs the backbone on each RGB frame and concatenates.

The computation is split in two so a caller can cache the expensive part (SB3 #409):
``backbone_features(obs)`` is the frozen part (no grad) and ``forward_from_features(feats)`` the trainable
part; ``forward`` is exactly their composition. Frozen blocks stay in eval mode even under
``policy.train()``, so their BatchNorm statistics and outputs never drift during RL.
``agents.heads`` holds the trainable part alone (``CachedFeaturesHead``), for a policy whose observations
already are those frozen features (``simreal.training.engine.features.VecFrozenFeatures``), and the extractor
for Dict observations (``DictBackboneExtractor``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space_channels_first
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from agents.augment import Augmentation
from agents.backbones import build_backbone
from agents.keypoints import SpatialKeypoints

Normalize = Literal["imagenet", "none"]
Projection = Literal["relu", "layernorm", "keypoints"]
Readout = Literal["stack", "diff"]


class BackboneExtractor(BaseFeaturesExtractor):
    """Backbone up to ``tap`` -> average pool per frame (global or a small grid) -> concat -> projection.

    :param observation_space: image Box, CHW or HWC, with 3k channels (k stacked RGB frames).
    :param backbone: registry name (``agents.backbones.BACKBONES``).
    :param weights: ``"imagenet"``, a local state-dict path, or None for a random init.
    :param tap: stage whose output is used (``backbone.tap_names()``); None = the last before the classifier.
    :param features_dim: output size of the projection.
    :param pool: side of the average-pooling grid per frame. 1 = global average pooling (C features per
        frame: what is in the image); g > 1 keeps a g x g layout (C*g*g features: where it is), which
        control from pixels usually needs - a thin pole's angle is gone after global pooling.
    :param frozen: freeze the backbone (``requires_grad=False``, eval mode, no grad, autocast on CUDA).
    :param unfreeze_last: with ``frozen``, the number of last blocks before ``tap`` that still train.
    :param image_size: resize frames (bilinear) to this square side; None keeps the observation size.
    :param normalize: ``"imagenet"`` applies the statistics the backbone's ImageNet weights were trained
        with (``backbone.input_mean/input_std``; inception-style 127/128 for EfficientNet-Lite0), ``"none"``
        feeds [0, 1] input as is.
    :param projection: ``"relu"`` = Linear -> ReLU; ``"layernorm"`` = Linear -> LayerNorm -> Tanh (the
        DrQ-v2 trunk, bounded features); ``"keypoints"`` = a spatial-softmax read-out of each frame's
        grid (``agents.keypoints.SpatialKeypoints``): ``keypoints`` (x, y) positions of the newest frame
        and their motions, so ``features_dim`` is ``2 * keypoints * frames`` (the argument is ignored);
        it needs ``pool >= 2`` and ``readout="stack"`` (the motion is the keypoints' own difference).
    :param keypoints: the number of keypoints per frame with ``projection="keypoints"``.
    :param readout: how the k frames' pooled features are laid out for the projection. ``"stack"``: as
        they are, oldest first. ``"diff"``: the newest frame's features, then the k-1 differences between
        consecutive frames, newest first (``f_k, f_k - f_{k-1}, ..., f_2 - f_1``): the same information,
        with motion as its own features - on a frozen backbone a moving pole changes its features by a
        small fraction of their size, which a policy network reads poorly from stacked values
        (``benchmarks/pixels_diagnosis.py``). Same size either way.

    SB3's ``ortho_init`` (on by default for PPO/A2C) calls ``extractor.apply(init_weights)``, which would
    overwrite pretrained convolutions: ``apply`` is overridden to reach only the projection when the
    backbone carries loaded weights.
    """

    input_mean: torch.Tensor
    input_std: torch.Tensor

    def __init__(
        self,
        observation_space: spaces.Box,
        backbone: str,
        weights: str | None,
        tap: str | None = None,
        features_dim: int = 256,
        pool: int = 1,
        frozen: bool = True,
        unfreeze_last: int = 0,
        image_size: int | None = None,
        normalize: Normalize = "imagenet",
        projection: Projection = "relu",
        augmentation: dict[str, Any] | None = None,
        readout: Readout = "stack",
        keypoints: int = 16,
    ):
        shape = observation_space.shape
        if not isinstance(observation_space, spaces.Box) or shape is None or len(shape) != 3:
            raise ValueError(
                f"BackboneExtractor needs an image Box (C,H,W) or (H,W,C), got {observation_space}"
            )
        channels_first = is_image_space_channels_first(observation_space)
        channels = shape[0] if channels_first else shape[-1]
        if channels % 3 != 0:
            raise ValueError(f"expected 3k RGB channels (k stacked frames), got {channels}")
        n_frames = channels // 3
        if projection == "keypoints":
            if readout != "stack":
                raise ValueError("projection 'keypoints' reads each frame's grid: needs readout 'stack'")
            features_dim = 2 * keypoints * n_frames
        if features_dim <= 0:
            raise ValueError(f"features_dim must be positive, got {features_dim}")
        super().__init__(observation_space, features_dim)
        self._image_shape: tuple[int, ...] = tuple(shape)
        self.channels_first, self.n_frames = channels_first, n_frames
        if pool <= 0:
            raise ValueError(f"pool must be a positive grid side, got {pool}")
        self.pool = pool
        if readout not in ("stack", "diff"):
            raise ValueError(f"readout must be 'stack' or 'diff', got {readout!r}")
        self.readout = readout
        if normalize not in ("imagenet", "none"):
            raise ValueError(f"normalize must be 'imagenet' or 'none', got {normalize!r}")
        if image_size is not None and image_size <= 0:
            raise ValueError(f"image_size must be positive or None, got {image_size}")
        self.image_size = image_size
        # Applied to training batches only (SB3 puts the policy in eval mode to act and evaluate).
        self.augment = Augmentation(**augmentation) if augmentation else None

        self.backbone = build_backbone(backbone, weights)
        self.tap = self.backbone.resolve_tap(tap)
        self.backbone.prune_after(self.tap)
        blocks = self.backbone.blocks(self.tap)
        if not frozen and unfreeze_last:
            raise ValueError("unfreeze_last only applies with frozen=True (frozen=False trains every block)")
        if not 0 <= unfreeze_last <= len(blocks):
            raise ValueError(
                f"unfreeze_last must be in [0, {len(blocks)}] for tap {self.tap!r}, got {unfreeze_last}"
            )
        n_frozen = len(blocks) - unfreeze_last if frozen else 0
        self.frozen_blocks, self.trainable_blocks = blocks[:n_frozen], blocks[n_frozen:]
        for block in self.frozen_blocks:
            for param in self.backbone.block_parameters(block):
                param.requires_grad_(False)
        self.backbone.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self._pretrained = weights is not None

        mean, std = (
            (self.backbone.input_mean, self.backbone.input_std)
            if normalize == "imagenet"
            else ((0.0,) * 3, (1.0,) * 3)
        )
        self.register_buffer("input_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

        in_features = self.pooled_features()
        self.projection: nn.Module
        if projection == "keypoints":
            channels_at_tap = self.backbone.tap_channels(self.tap)
            self.projection = SpatialKeypoints(channels_at_tap, pool, n_frames, keypoints)
        elif projection == "relu":
            self.projection = nn.Sequential(nn.Linear(in_features, features_dim), nn.ReLU())
        elif projection == "layernorm":
            self.projection = nn.Sequential(
                nn.Linear(in_features, features_dim), nn.LayerNorm(features_dim), nn.Tanh()
            )
        else:
            raise ValueError(f"projection must be 'relu', 'layernorm' or 'keypoints', got {projection!r}")
        self.train()

    # ----- modes and initialization -----

    def train(self, mode: bool = True) -> BackboneExtractor:
        """Set ``mode`` everywhere except the frozen blocks, which always stay in eval mode."""
        super().train(mode)
        for block in self.frozen_blocks:
            for module in self.backbone.block_modules(block):
                module.eval()
        return self

    def apply(self, fn: Callable[[nn.Module], None]) -> BackboneExtractor:
        """Like ``nn.Module.apply``, but never reaches the backbone (SB3 ``ortho_init``): loaded weights
        stay loaded, and a random backbone keeps its own (PyTorch default) initialization - orthogonal
        init cannot view its ``channels_last`` convolution weights anyway."""
        self.projection.apply(fn)
        fn(self)
        return self

    # ----- the two halves of forward -----

    def pooled_features(self) -> int:
        """Size of the pooled, frame-concatenated vector the projection reads."""
        return self.backbone.tap_channels(self.tap) * self.pool**2 * self.n_frames

    def feature_map_size(self) -> tuple[int, int]:
        """(H, W) of the tap's feature map for this extractor's frames (one dummy frame through it)."""
        with torch.no_grad():
            frames = self.preprocess(torch.zeros((1, *self._image_shape), dtype=torch.uint8))[:1]
            maps = self.backbone.forward_to(frames, self.tap)
        return int(maps.shape[-2]), int(maps.shape[-1])

    def _pool(self, maps: torch.Tensor, n: int) -> torch.Tensor:
        """(N*k, C, H, W) maps -> (N, k*C*g*g): average over the g x g grid, frames concatenated."""
        if self.pool == 1:
            return maps.mean(dim=(2, 3)).reshape(n, -1)
        height, width = int(maps.shape[-2]), int(maps.shape[-1])
        if height % self.pool == 0 and width % self.pool == 0:  # the same cells; exportable to ONNX
            return F.avg_pool2d(maps, (height // self.pool, width // self.pool)).reshape(n, -1)
        return F.adaptive_avg_pool2d(maps, self.pool).reshape(n, -1)

    def read_out(self, pooled: torch.Tensor) -> torch.Tensor:
        """Frame-concatenated pooled features (N, k*W), oldest first -> the projection's input layout
        (``readout``): unchanged for ``"stack"``; the newest frame, then consecutive differences
        for ``"diff"``."""
        if self.readout == "stack" or self.n_frames == 1:
            return pooled
        frames = pooled.reshape(pooled.shape[0], self.n_frames, -1).flip(1)  # newest first
        return torch.cat([frames[:, :1], frames[:, :-1] - frames[:, 1:]], dim=1).reshape(pooled.shape[0], -1)

    def preprocess(self, obs: torch.Tensor) -> torch.Tensor:
        """Observations (N, 3k, H, W) in [0, 1] (uint8, HWC accepted) -> normalized frames (N*k, 3, S, S)."""
        x = self._channels_first_float(obs)
        if self.augment is not None and self.training:
            x = self.augment(x)
        n, _, height, width = x.shape
        return self._normalize_frames(x.reshape(n * self.n_frames, 3, height, width))

    def _channels_first_float(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs if self.channels_first else obs.permute(0, 3, 1, 2)
        return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()

    def _normalize_frames(self, x: torch.Tensor) -> torch.Tensor:
        """RGB frames (M, 3, H, W) in [0, 1] -> resized, normalized, channels_last."""
        height, width = x.shape[-2:]
        if self.image_size is not None and (height, width) != (self.image_size, self.image_size):
            x = F.interpolate(
                x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
            )
        x = (x - self.input_mean) / self.input_std
        return x.contiguous(memory_format=torch.channels_last)

    def _frozen(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized frames through the frozen blocks, without grad (autocast on CUDA)."""
        if not self.frozen_blocks:
            return x
        with torch.no_grad(), _autocast(x):
            return self.backbone.forward_blocks(x, self.frozen_blocks).float()

    def backbone_features(self, obs: torch.Tensor) -> torch.Tensor:
        """The frozen part, without grad: what a caller may compute once per rollout and reuse.

        Returns pooled features (N, k*C*g*g) when the whole backbone is frozen, else the frozen prefix's
        feature maps with frames folded into channels (N, k*C', H', W'); with ``frozen=False`` that
        prefix is empty and the result is the normalized frames. Stale after ``adapt_batchnorm``.
        """
        n = obs.shape[0]
        x = self._frozen(self.preprocess(obs))
        if not self.trainable_blocks:
            return self.read_out(self._pool(x, n))
        return x.reshape(n, -1, *x.shape[-2:])

    def frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        """Pooled frozen features (M, C*g*g) of single RGB frames, laid out like the observations
        ((M, 3, H, W) or (M, H, W, 3)), for a fully frozen backbone; never augmented.

        ``backbone_features`` of a k-frame observation is ``read_out`` of its frames' rows concatenated,
        oldest first, so a caller that has encoded some frames already can compute only the new ones.
        """
        if self.trainable_blocks:
            raise ValueError("frame_features needs a fully frozen backbone (unfreeze_last=0)")
        x = self._frozen(self._normalize_frames(self._channels_first_float(frames)))
        return self._pool(x, x.shape[0])

    def forward_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """The trainable part: unfrozen blocks (if any) -> pool -> concat frames -> projection."""
        if self.trainable_blocks:
            n = features.shape[0]
            x = features.reshape(n * self.n_frames, -1, *features.shape[-2:])
            x = self.backbone.forward_blocks(
                x.contiguous(memory_format=torch.channels_last), self.trainable_blocks
            )
            features = self.read_out(self._pool(x.float(), n))
        return self.projection(features)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.forward_from_features(self.backbone_features(observations))

    # ----- optimizer support -----

    def param_groups(self, base_lr: float, backbone_lr: float) -> list[dict[str, Any]]:
        """Optimizer groups: the projection at ``base_lr``, unfrozen backbone blocks at ``backbone_lr``.

        Each group carries ``lr_scale`` (its lr / base_lr): SB3 overwrites every group's lr with its
        schedule at each ``train()`` (SB3 #735), so whoever applies the schedule should multiply by it.
        """
        if base_lr <= 0 or backbone_lr < 0:
            raise ValueError(f"need base_lr > 0 and backbone_lr >= 0, got {base_lr}, {backbone_lr}")
        groups: list[dict[str, Any]] = [
            {
                "name": "projection",
                "params": list(self.projection.parameters()),
                "lr": base_lr,
                "lr_scale": 1.0,
            }
        ]
        unfrozen = [p for block in self.trainable_blocks for p in self.backbone.block_parameters(block)]
        if unfrozen:
            groups.append(
                {"name": "backbone", "params": unfrozen, "lr": backbone_lr, "lr_scale": backbone_lr / base_lr}
            )
        return groups


def _autocast(x: torch.Tensor) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on a CUDA device that supports it; nothing on CPU (slow and lossy there)."""
    if x.device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def adapt_batchnorm(extractor: BackboneExtractor, images: torch.Tensor, batch_size: int = 64) -> int:
    """AdaBN: re-estimate the backbone's BatchNorm running statistics on target-domain ``images``.

    ``images`` are observations as the extractor receives them (N, 3k, H, W) in [0, 1] (uint8 accepted).
    Statistics are reset, then accumulated as a cumulative average (``momentum=None``) with only the
    BatchNorm layers in train mode and no grads; afterwards momenta and modes are restored (frozen
    blocks back in eval). Returns the number of BatchNorm layers adapted. Cached features become stale.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    backbone = extractor.backbone
    norms = [
        module
        for block in backbone.blocks(extractor.tap)
        for top in backbone.block_modules(block)
        for module in top.modules()
        if isinstance(module, nn.BatchNorm2d)
    ]
    if not norms:
        return 0
    device = extractor.input_mean.device
    was_training = extractor.training
    momenta = [bn.momentum for bn in norms]
    extractor.eval()
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    try:
        with torch.no_grad():
            for chunk in images.split(batch_size):
                backbone.forward_to(extractor.preprocess(chunk.to(device)), extractor.tap)
    finally:
        for bn, momentum in zip(norms, momenta, strict=True):
            bn.momentum = momentum
        extractor.train(was_training)
    return len(norms)
