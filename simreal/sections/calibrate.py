"""The `calibrate:` block: measure the target with the randomized policy, fit the simulation to it, and
pretrain again on ranges that hold what was measured (see `simreal.training.methods.calibrate`).

    calibrate:
      episodes: 10          # counted target episodes of the randomized policy (in the calibrated budget)
      max_steps: null       # stop collecting there (null: half the training budget)
      excite: 0.1           # Gaussian noise on its commands, action units (reveals what its motion hides)
      params: null          # the axes to fit (null: every randomized one)
      mode: cover           # cover: widen the ranges to hold the value; center: re-centre them on it
      stds: 4.0             # each calibrated range holds the value +- stds standard deviations
      warm_start: false     # pretrain_calibrated from scratch, or from the randomized policy
      timesteps: null       # its sim steps (null: pretrain.timesteps)
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from simreal.schema import Spec


class CalibrateConfig(Spec):
    """Calibration inside a run: `calibrate_collect` (the randomized policy's episodes on the target,
    counted), `calibrate_fit`, `pretrain_calibrated`, then `zeroshot_calibrated` and
    `finetune_calibrated`, whose target budgets include the calibration's steps."""

    episodes: int = Field(default=10, ge=1)
    """Target episodes of the randomized policy the fit reads (counted in the calibrated variants'
    budget)."""
    max_steps: int | None = Field(default=None, ge=1)
    """The most target steps the collection may take (None: half the training budget); it stops there,
    mid-episode if need be. Counted in the calibrated variants' budget, so it must leave at least one
    rollout of it."""
    excite: float = Field(default=0.0, ge=0)
    """Std of Gaussian noise added to the policy's commands while collecting (action units; at most half
    the narrowest action range)."""
    params: list[str] | None = None
    """The axes to fit, as `simreal calibrate --params` names them (None: every randomized one)."""
    mode: Literal["center", "cover"] = "cover"
    """`cover`: the source ranges widened just enough to hold each identified value; `center`: each range
    re-centred on it, as wide as its uncertainty."""
    stds: float = Field(default=4.0, gt=0)
    """How many standard deviations of the identified value each calibrated range holds on either side
    (the fit's stds understate its error: 4 held the truth on the panel targets measured, 2 on 84%)."""
    segments: int = Field(default=96, ge=8)
    """Recorded segments replayed per candidate of the fit (fewer: a faster, noisier fit)."""
    workers: int = Field(default=0, ge=0)
    """Processes the fit's replay evaluations are spread over (0: one per core); the result is the same
    for any number."""
    warm_start: bool = False
    """Start `pretrain_calibrated` from the randomized policy (its weights and observation statistics)
    instead of a fresh network."""
    timesteps: int | None = Field(default=None, ge=1)
    """Sim steps of `pretrain_calibrated` (None: `pretrain.timesteps`)."""

    def check(self, exp: Any) -> None:
        """The collection runs the randomized policy with the training seeds' own target ids."""
        if exp.pixels:
            raise ValueError(
                "calibrate: fits the state the task observes, not camera frames (allowed: pixels: false)"
            )
