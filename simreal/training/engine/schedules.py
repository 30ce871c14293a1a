"""Learning-rate schedules for SB3, which calls `schedule(progress_remaining)` at every `train()`.

Setting `optimizer.param_groups[...]["lr"]` by hand does not last (SB3 overwrites it from the
schedule), so the fine-tuning rate is expressed here, as the schedule itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class WarmupDecaySchedule:
    """`base_lr` after a linear warm-up over the first `warmup_fraction` of training, then a decay.

    progress_remaining runs from 1 (start) to 0 (end), as in SB3.
    `decay`: constant keeps `base_lr`; linear and cosine go to `final_fraction * base_lr` at the end.
    """

    base_lr: float
    decay: Literal["constant", "linear", "cosine"] = "constant"
    warmup_fraction: float = 0.0
    final_fraction: float = 0.0

    def __call__(self, progress_remaining: float) -> float:
        progress = min(max(1.0 - progress_remaining, 0.0), 1.0)
        if self.warmup_fraction > 0 and progress < self.warmup_fraction:
            return self.base_lr * max(progress / self.warmup_fraction, 1e-3)
        if self.decay == "constant":
            return self.base_lr
        span = max(1.0 - self.warmup_fraction, 1e-12)
        t = (progress - self.warmup_fraction) / span
        floor = self.final_fraction * self.base_lr
        if self.decay == "linear":
            return floor + (self.base_lr - floor) * (1.0 - t)
        return floor + (self.base_lr - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


class AdaptiveRate:
    """A rate that follows the policy's change per update (rsl_rl's `schedule: adaptive`): after each
    update, x1.5 when its KL stayed under `target_kl / 2`, /1.5 when it exceeded `2 x target_kl`, within
    [`low`, `high`]. A near target, where small updates already move the policy, keeps a gentle rate; a
    far one, where the low rate barely moves it, speeds up by itself. SB3 reads it at every `train()`."""

    FACTOR = 1.5

    def __init__(self, start: float, target_kl: float, low: float, high: float) -> None:
        self.rate = start
        self.target_kl, self.low, self.high = target_kl, low, high

    def __call__(self, progress_remaining: float) -> float:
        return self.rate

    def update(self, kl: float) -> float:
        """The next rate after an update whose KL (old policy to new, mean over the rollout) was `kl`."""
        if kl > 2.0 * self.target_kl:
            self.rate = max(self.rate / self.FACTOR, self.low)
        elif kl < 0.5 * self.target_kl:
            self.rate = min(self.rate * self.FACTOR, self.high)
        return self.rate
