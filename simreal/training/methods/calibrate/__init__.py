"""Calibration from target data (real-to-sim): measure the target, fit the simulation to it, and pretrain
again on ranges that hold what was measured.

Two ways in: `simreal calibrate` (`command.run_calibration`: a policy's counted episodes on the target,
or a team's log file; the calibration's files), and the `calibrate:` section of an experiment, which adds
the stages of `stages` to the run: `calibrate_collect` -> `calibrate_fit` -> `pretrain_calibrated` ->
`zeroshot_calibrated` and `finetune_calibrated`, the calibration's target steps counted in those two
variants' budgets.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym

from simreal.config import ExperimentConfig
from simreal.schema import ConfigError
from simreal.simulation.calibration import select_axes
from simreal.simulation.calibration.model import calibration_axes
from simreal.training.engine.context import Context
from simreal.training.engine.method import Method, Stage, transfer_stages
from simreal.training.methods.calibrate.collect import check_excite
from simreal.training.methods.calibrate.command import run_calibration
from simreal.training.methods.calibrate.stages import (
    collect_stage,
    finetune_stage,
    fit_stage,
    max_steps,
    pretrain_stage,
    zeroshot_stage,
)

__all__ = ["Calibrate", "run_calibration"]


def _calibrates(cfg: ExperimentConfig) -> bool:
    return cfg.calibrate is not None


def check_calibrate(ctx: Context) -> None:
    """The axes named exist, the excitation fits the action bounds, and the collection's cap leaves at
    least one rollout of the training budget - before anything is written."""
    c = ctx.cfg.calibrate
    if c is None:
        return
    select_axes(calibration_axes(ctx.task.spec), c.params, "calibrate.params")
    probe = gym.make(ctx.task.nominal_id)
    try:
        check_excite(c.excite, probe.action_space, "calibrate.excite")
    finally:
        probe.close()
    budget, rollout = ctx.train_budget, ctx.cfg.target_rollout
    cap, room = max_steps(ctx), max(budget - rollout, 0)
    if cap > room:
        raise ConfigError(
            f"calibrate.max_steps: {cap:,} target steps of collection leave less than one rollout "
            f"({rollout:,}) of the training budget ({budget:,}) (allowed: at most {room:,}, or a larger "
            "finetune.timesteps)"
        )


class Calibrate(Method):
    """Calibration inside a run, compared with the randomized, scratch and other variants at equal
    target budget (the calibration's steps included)."""

    name = "calibrate"
    section = "calibrate"

    def stages(self) -> Sequence[Stage]:
        on = _calibrates
        labels = (
            "zero-shot calibrated (pretrained on measured ranges)",
            "fine-tune calibrated (calibration counted)",
        )
        after = ("pretrain_calibrated", "calibrate_fit")
        return (
            Stage("calibrate_collect", collect_stage, ("pretrain_randomized",), True, enabled=on),
            Stage("calibrate_fit", fit_stage, ("calibrate_collect",), enabled=on),
            Stage(
                "pretrain_calibrated", pretrain_stage, ("pretrain_randomized", "calibrate_fit"), enabled=on
            ),
            *transfer_stages("calibrated", labels, zeroshot_stage, finetune_stage, after, on),
        )

    def preflight(self, ctx: Context) -> None:
        check_calibrate(ctx)
