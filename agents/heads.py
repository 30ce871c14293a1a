"""Features extractors built on :class:`agents.extractors.BackboneExtractor`: the trainable head of a
cached frozen backbone, and the extractor of Dict observations (image + state / action history).

Both keep SB3's ``ortho_init`` away from loaded convolutions, as ``BackboneExtractor`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from agents.extractors import BackboneExtractor


class CachedFeaturesHead(BaseFeaturesExtractor):
    """The trainable part of a frozen :class:`BackboneExtractor`, fed with the frozen part's features.

    For a policy whose observations are ``BackboneExtractor.backbone_features(image)`` (computed once per
    env step by a ``VecFrozenFeatures`` vec env wrapper), so rollout and replay buffers hold features and the
    frozen backbone never runs again in ``train()`` (SB3 #409). With the same spec and trainable
    weights, ``head(extractor.backbone_features(obs)) == extractor(obs)``.

    :param observation_space: the feature Box: (k*C*g*g,) for a fully frozen backbone, else the frozen
        prefix's maps (k*C', H', W').
    :param image_shape: (3k, H, W) of the images the frozen part saw.
    :param extractor_kwargs: the :class:`BackboneExtractor` spec (``backbone``, ``weights``, ``tap``,
        ``features_dim``, ``unfreeze_last``, ...); ``frozen`` must be True.
    :param extra_dims: trailing entries of each observation that are not image features (the other
        entries of a Dict observation, flattened after them: ``VecFrozenFeatures.layout``); they bypass the
        projection and are concatenated to its output, so ``features_dim`` = projection + ``extra_dims``.
        Only with a fully frozen backbone (flat features).

    The spec is built whole (so unfrozen blocks start from the loaded weights), then the frozen blocks
    are replaced by Identity: the head's ``state_dict`` holds only the projection and the unfrozen
    blocks, and a saved policy reloads into a head built from the same spec.
    """

    def __init__(
        self,
        observation_space: spaces.Box,
        image_shape: Sequence[int],
        extra_dims: int = 0,
        **extractor_kwargs: Any,
    ):
        if not extractor_kwargs.get("frozen", True):
            raise ValueError("CachedFeaturesHead needs frozen=True: with nothing frozen, nothing is cached")
        if extra_dims < 0:
            raise ValueError(f"extra_dims must be >= 0, got {extra_dims}")
        image_space = spaces.Box(0, 255, tuple(image_shape), np.uint8)
        extractor = BackboneExtractor(image_space, **extractor_kwargs)
        super().__init__(observation_space, extractor.features_dim + extra_dims)
        self.extra_dims = extra_dims
        shape = observation_space.shape
        backbone = extractor.backbone
        if extractor.trainable_blocks:  # frozen prefix maps, frames folded into channels
            matches = len(shape) == 3 and shape[0] % extractor.n_frames == 0 and not extra_dims
        else:  # pooled vector per frame, concatenated, then the extra entries
            matches = shape == (extractor.pooled_features() + extra_dims,)
        if not matches:
            raise ValueError(f"features of shape {shape} do not come from the frozen part of this spec")
        for block in extractor.frozen_blocks:
            for path in backbone.block_paths(block):
                parent, _, name = path.rpartition(".")
                (backbone.get_submodule(parent) if parent else backbone).register_module(name, nn.Identity())
        self.extractor = extractor

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if not self.extra_dims:
            return self.extractor.forward_from_features(features)
        image, extra = features[:, : -self.extra_dims], features[:, -self.extra_dims :]
        return torch.cat([self.extractor.forward_from_features(image), extra], dim=1)

    def param_groups(self, base_lr: float, backbone_lr: float) -> list[dict[str, Any]]:
        """Optimizer groups as :meth:`BackboneExtractor.param_groups`."""
        return self.extractor.param_groups(base_lr, backbone_lr)


class DictBackboneExtractor(BaseFeaturesExtractor):
    """A :class:`BackboneExtractor` on the ``"image"`` entry of a Dict observation, the other entries
    (``"state"``, ``"action_history"``: Boxes) flattened and concatenated to its output, in the Dict's order.

    For SB3's ``MultiInputPolicy`` when images reach the policy (``cache_features: false``); with cached
    features a Dict observation is one flat vector and :class:`CachedFeaturesHead` takes ``extra_dims``.
    """

    def __init__(self, observation_space: spaces.Dict, **extractor_kwargs: Any):
        if not isinstance(observation_space, spaces.Dict) or "image" not in observation_space.spaces:
            raise ValueError(
                f"DictBackboneExtractor needs a Dict observation with 'image', got {observation_space}"
            )
        others: list[tuple[str, spaces.Box]] = []
        for key, box in observation_space.spaces.items():
            if key == "image":
                continue
            if not isinstance(box, spaces.Box):
                raise ValueError(f"observation entry {key!r}: needs a Box, got {box}")
            others.append((key, box))
        image = BackboneExtractor(observation_space["image"], **extractor_kwargs)  # type: ignore[arg-type]
        extra = sum(int(np.prod(box.shape)) for _, box in others)
        super().__init__(observation_space, image.features_dim + extra)
        self.image = image
        self.keys = [key for key, _ in others]

    def apply(self, fn: Callable[[nn.Module], None]) -> DictBackboneExtractor:
        """SB3's ``ortho_init`` reaches the image extractor's projection only (see BackboneExtractor)."""
        self.image.apply(fn)
        fn(self)
        return self

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        rest = [observations[key].float().flatten(1) for key in self.keys]
        return torch.cat([self.image(observations["image"]), *rest], dim=1)

    def param_groups(self, base_lr: float, backbone_lr: float) -> list[dict[str, Any]]:
        """Optimizer groups as :meth:`BackboneExtractor.param_groups`."""
        return self.image.param_groups(base_lr, backbone_lr)
