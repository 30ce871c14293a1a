"""The one place where `auto|cpu|cuda` becomes a torch device."""

from __future__ import annotations

from typing import Literal

import torch

DeviceName = Literal["auto", "cpu", "cuda"]


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA when available; asking for `cuda` without one is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                "device: 'cuda' requested but torch.cuda.is_available() is False (allowed: auto, cpu)"
            )
        return torch.device("cuda")
    raise ValueError(f"device: unknown device {name!r} (allowed: auto, cpu, cuda)")
