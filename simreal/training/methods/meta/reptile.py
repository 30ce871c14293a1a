"""Reptile's outer update (Nichol, Achiam and Schulman 2018, first-order): move the initialization toward
the weights the inner loops adapted it to."""

from __future__ import annotations

from collections.abc import Sequence

import torch

State = dict[str, torch.Tensor]


def reptile_update(theta: State, adapted: Sequence[State], step: float) -> State:
    """`theta + step * mean_i(adapted_i - theta)` for every floating-point tensor; the others (counters)
    are taken from `theta`. A tensor that no inner loop changed (a frozen layer) stays bit-identical."""
    if not adapted:
        raise ValueError("reptile_update: no adapted weights")
    out: State = {}
    for key, value in theta.items():
        if not torch.is_floating_point(value):
            out[key] = value.clone()
            continue
        changes = [a[key].to(value.device) - value for a in adapted]
        if all(not bool(c.any()) for c in changes):
            out[key] = value.clone()
            continue
        out[key] = value + step * torch.stack(changes).mean(dim=0)
    return out


def cloned(state: State) -> State:
    """A detached copy (the model's own tensors change as it trains)."""
    return {k: v.detach().clone() for k, v in state.items()}
