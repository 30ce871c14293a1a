"""Teacher-student distillation as a method: a privileged teacher, a student that sees only what the robot
sees, and the student on the target like any policy.

Stages (with a `distill:` section): `pretrain_teacher` -> `student` -> `zeroshot_student` and
`finetune_student`; the stage functions are in `stages` (state students) and `pixels` (camera students),
the DAgger loop and its losses in `dagger`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from simreal.config import ExperimentConfig
from simreal.schema import ConfigError
from simreal.training.engine.context import Context
from simreal.training.engine.method import Method, Stage, transfer_stages
from simreal.training.engine.preflight import dry_run
from simreal.training.methods.distill.setup import context_for, student_config, teacher_config
from simreal.training.methods.distill.stages import distill_student, pretrain_teacher, student_context
from simreal.training.methods.finetune import finetune
from simreal.training.methods.zeroshot import zero_shot


def teacher_stage(ctx: Context, seed: int) -> Path:
    return pretrain_teacher(ctx, seed)


def student_stage(ctx: Context, seed: int, teacher: Path) -> Path:
    return distill_student(ctx, teacher, seed)


def zeroshot_student(ctx: Context, seed: int, student: Path) -> None:
    """The student on the target with no target training (the same yardstick as every variant)."""
    zero_shot(student_context(ctx, student), student, seed, "zeroshot_student")


def finetune_student(ctx: Context, seed: int, student: Path) -> None:
    """The student fine-tuned on the target like any policy."""
    finetune(student_context(ctx, student), student, seed, "finetune_student")


def _distills(cfg: ExperimentConfig) -> bool:
    return cfg.distill is not None


def check_distill(ctx: Context) -> None:
    """With `distill:`, the randomized sim must report something privileged, and teacher and student
    must build (on the source's spaces; no env is stepped)."""
    if ctx.cfg.distill is None:
        return
    try:
        tcfg = teacher_config(ctx.cfg)
        scfg = student_config(ctx.cfg)
    except ValueError as err:
        raise ConfigError(f"{ctx.cfg.task.source}: {err}") from None
    if ctx.cfg.pixels:  # the env the teacher labels in: the state beside the image (refused in one line)
        ctx.make_env(ctx.task.pixel_randomized_id, teacher_state=True).close()
    for who, cfg in (("distill.teacher", tcfg), ("distill.student", scfg)):
        try:
            dry_run(context_for(ctx, cfg), cfg.algo)
        except Exception as err:  # noqa: BLE001 - SB3 raises anything from its constructor
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(f"{who}: the {cfg.algo.name} model cannot be built ({first})") from None


class Distill(Method):
    """A privileged teacher distilled into a deployable student, which then transfers like any policy."""

    name = "distill"
    section = "distill"

    def stages(self) -> Sequence[Stage]:
        labels = ("zero-shot student (distilled)", "fine-tune student (distilled -> target)")
        after = ("student",)
        return (
            Stage("pretrain_teacher", teacher_stage, enabled=_distills),
            Stage("student", student_stage, ("pretrain_teacher",), enabled=_distills),
            *transfer_stages(
                "student", labels, zeroshot_student, finetune_student, after, _distills, against_scratch=False
            ),
        )

    def preflight(self, ctx: Context) -> None:
        check_distill(ctx)
