"""Multi-task pretraining: one network pretrained on several tasks at once (`pretrain.tasks`), then
transferred to the experiment's own task, which it never saw.

Stages (with `pretrain.tasks`): `pretrain_multitask` (see `stages`), then `zeroshot_multitask` and
`finetune_multitask` on the experiment's target - the same evaluation seeds, fine-tuning and budget as
`finetune` (the randomized single-task policy) and `scratch`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from simreal.config import ExperimentConfig
from simreal.schema import ConfigError
from simreal.training.engine.context import Context
from simreal.training.engine.method import Method, Stage, transfer_stages
from simreal.training.methods.finetune import finetune
from simreal.training.methods.multitask.stages import layout, multitask_context, pretrain_multitask, spaces_of
from simreal.training.methods.zeroshot import zero_shot


def _multitask(cfg: ExperimentConfig) -> bool:
    return bool(cfg.pretrain.tasks)


def pretrain_stage(ctx: Context, seed: int) -> Path:
    return pretrain_multitask(ctx, seed)


def zeroshot_stage(ctx: Context, seed: int, policy: Path) -> None:
    """The held-out task in the experiment's layout (its `held_out_as` id), not the one the policy was
    saved with."""
    mctx = multitask_context(ctx, seed)
    zero_shot(mctx, policy, seed, "zeroshot_multitask", observation=mctx.cfg.observation)


def finetune_stage(ctx: Context, seed: int, policy: Path) -> None:
    finetune(multitask_context(ctx, seed), policy, seed, "finetune_multitask")


def check_spaces(ctx: Context) -> None:
    """Every task (and the held-out one) has flat Box spaces that pad to one layout, the held-out task's
    within it - one line before anything is written."""
    if not ctx.cfg.pretrain.tasks:
        return
    try:
        common, _ = layout(ctx)
    except ValueError as err:
        raise ConfigError(
            f"pretrain.tasks: {err} (allowed: tasks with flat Box observations and actions)"
        ) from None
    obs, act = spaces_of(ctx.task.nominal_id)
    if not (obs.shape and act.shape) or obs.shape[0] > common.obs_dim or act.shape[0] > common.act_dim:
        raise ConfigError(
            f"task: {ctx.cfg.task.name}'s spaces ({obs}, {act}) do not fit the multi-task layout "
            f"({common.obs_dim} observation, {common.act_dim} action components) (allowed: a held-out task "
            "no larger than the largest pretraining task)"
        )


class Multitask(Method):
    """A multi-task policy, zero-shot and fine-tuned on the held-out task's target."""

    name = "multitask"

    def stages(self) -> Sequence[Stage]:
        labels = ("zero-shot multi-task (held-out task)", "fine-tune multi-task (other tasks -> this one)")
        after = ("pretrain_multitask",)
        return (
            Stage("pretrain_multitask", pretrain_stage, enabled=_multitask, early=True),
            *transfer_stages("multitask", labels, zeroshot_stage, finetune_stage, after, _multitask),
        )

    def preflight(self, ctx: Context) -> None:
        check_spaces(ctx)
