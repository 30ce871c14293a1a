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
