"""Image augmentation for learning from little target data: DrQ random shift, crop, colour jitter.

Pure torch on float batches (N, C, H, W) in [0, 1]; C may be 3k stacked RGB frames. Every random draw
comes from an explicit ``torch.Generator`` (never the global RNG), one draw per sample, so a seeded
generator reproduces a batch exactly. ``Augmentation`` composes them from plain kwargs and is a no-op
in eval mode.

Example::

    aug = Augmentation(shift_pad=4, brightness=0.2, seed=0)
    x_aug = aug(x)          # training mode: augmented
    aug.eval(); aug(x)      # evaluation: x unchanged
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# ITU-R BT.601 luma weights, as in torchvision's rgb_to_grayscale.
LUMA = (0.299, 0.587, 0.114)


def _check_batch(x: torch.Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"expected an image batch (N, C, H, W), got shape {tuple(x.shape)}")


def _crop(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Per-sample crops: sample i is ``x[i, :, top[i]:top[i]+height, left[i]:left[i]+width]``."""
    n, c = x.shape[:2]
    rows = top.to(x.device)[:, None] + torch.arange(height, device=x.device)
    cols = left.to(x.device)[:, None] + torch.arange(width, device=x.device)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return x[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]


def random_shift(x: torch.Tensor, pad: int = 4, *, generator: torch.Generator) -> torch.Tensor:
    """DrQ shift: replicate-pad by ``pad`` then crop back to (H, W) at a random integer offset per sample.

    ``pad=0`` is the identity (a copy of ``x``). Values are only moved, never mixed.
    """
    _check_batch(x)
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    if pad == 0:
        return x.clone()
    n, _, height, width = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    offsets = torch.randint(0, 2 * pad + 1, (2, n), generator=generator, device=generator.device)
    return _crop(padded, offsets[0], offsets[1], height, width)


def random_crop(x: torch.Tensor, out_size: int, *, generator: torch.Generator) -> torch.Tensor:
    """Crop a random ``out_size`` square per sample, then resize it back to (H, W) bilinearly."""
    _check_batch(x)
    n, _, height, width = x.shape
    if not 0 < out_size <= min(height, width):
        raise ValueError(f"out_size must be in [1, {min(height, width)}], got {out_size}")
    top = torch.randint(0, height - out_size + 1, (n,), generator=generator, device=generator.device)
    left = torch.randint(0, width - out_size + 1, (n,), generator=generator, device=generator.device)
    crops = _crop(x, top, left, out_size, out_size)
    return F.interpolate(crops, size=(height, width), mode="bilinear", align_corners=False)


def _gray(frames: torch.Tensor) -> torch.Tensor:
    """Luma of (N, k, 3, H, W) frames, shape (N, k, 1, H, W)."""
    weights = torch.tensor(LUMA, dtype=frames.dtype, device=frames.device).view(1, 1, 3, 1, 1)
    return (frames * weights).sum(dim=2, keepdim=True)


def color_jitter(
    x: torch.Tensor,
    brightness: float = 0.0,
    contrast: float = 0.0,
    saturation: float = 0.0,
    *,
    generator: torch.Generator,
) -> torch.Tensor:
    """Scale brightness, contrast and saturation by per-sample factors drawn from U[1 - s, 1 + s].

    Applied in that order, each followed by a clamp to [0, 1], like torchvision's adjust_* functions.
    Stacked frames of one sample share its factors (one camera). Needs C = 3k.
    """
    _check_batch(x)
    n, channels, height, width = x.shape
    if channels % 3 != 0:
        raise ValueError(f"color_jitter needs 3k RGB channels, got {channels}")
    for name, strength in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {strength}")
    frames = x.reshape(n, channels // 3, 3, height, width)

    def factor(strength: float) -> torch.Tensor:
        u = torch.rand(n, generator=generator, device=generator.device, dtype=torch.float32)
        return (1.0 + (2.0 * u - 1.0) * strength).to(device=x.device, dtype=x.dtype).view(n, 1, 1, 1, 1)

    if brightness > 0:
        frames = (frames * factor(brightness)).clamp(0.0, 1.0)
    if contrast > 0:
        mean = _gray(frames).mean(dim=(-3, -2, -1), keepdim=True)
        frames = ((frames - mean) * factor(contrast) + mean).clamp(0.0, 1.0)
    if saturation > 0:
        gray = _gray(frames)
        frames = ((frames - gray) * factor(saturation) + gray).clamp(0.0, 1.0)
    return frames.reshape(n, channels, height, width)


class Augmentation(nn.Module):
    """Crop -> shift -> colour jitter from plain kwargs, own seeded generator, active only in train mode.

    :param shift_pad: DrQ shift padding in pixels (0 = off).
    :param crop_size: random crop side before resizing back (None = off).
    :param brightness: jitter strength in [0, 1] (0 = off); likewise ``contrast`` and ``saturation``.
    :param seed: seed of this module's ``torch.Generator`` (CPU; draws are moved to the batch device).
    :param enabled: master switch; even when True nothing happens in eval mode (``self.training``).
    """

    def __init__(
        self,
        shift_pad: int = 0,
        crop_size: int | None = None,
        brightness: float = 0.0,
        contrast: float = 0.0,
        saturation: float = 0.0,
        seed: int = 0,
        enabled: bool = True,
    ):
        super().__init__()
        if shift_pad < 0:
            raise ValueError(f"shift_pad must be >= 0, got {shift_pad}")
        if crop_size is not None and crop_size <= 0:
            raise ValueError(f"crop_size must be positive or None, got {crop_size}")
        for name, strength in (
            ("brightness", brightness),
            ("contrast", contrast),
            ("saturation", saturation),
        ):
            if not 0.0 <= strength <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {strength}")
        self.shift_pad = shift_pad
        self.crop_size = crop_size
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation
        self.enabled = enabled
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.enabled and self.training):
            return x
        if self.crop_size is not None:
            x = random_crop(x, self.crop_size, generator=self.generator)
        if self.shift_pad:
            x = random_shift(x, self.shift_pad, generator=self.generator)
        if self.brightness or self.contrast or self.saturation:
            x = color_jitter(x, self.brightness, self.contrast, self.saturation, generator=self.generator)
        return x
