"""Training from scratch on the target: `scratch` at the fine-tuning budget (what transfer must beat) and
the `reference` - scratch for much longer, trained once per target in a shared directory and reused, so
the yardstick's "good" is what a target-trained policy reaches.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from simreal.config import ExperimentConfig
from simreal.simulation.accounting import STEPS
from simreal.training.engine.artifacts import atomic_write_text
from simreal.training.engine.context import Context
from simreal.training.engine.loop import CURVE
from simreal.training.engine.method import Method, Stage, Variant
from simreal.training.engine.stage import FINAL
from simreal.training.engine.target import FromScratch, locked, train_on_target
from simreal.training.methods.scratch.reference import reference_dir


def scratch(ctx: Context, seed: int) -> None:
    """A fresh policy trained on the target for the fine-tuning budget."""
    train_on_target(ctx, seed, "scratch", FromScratch(), ctx.train_budget, ctx.stage_dir("scratch", seed))


def reference(ctx: Context, seed: int) -> None:
    """Scratch on the target for `reference.timesteps`: trained once in the shared reference directory
    (or found there, from an earlier run on the same target) and its results copied into this run."""
    assert ctx.cfg.reference_steps is not None, "reference: disabled in this config"
    rollout = ctx.cfg.target_rollout
    steps = max(rollout, ctx.cfg.reference_steps // rollout * rollout)  # whole rollouts, as fine-tuning
    mine = ctx.stage_dir("reference", seed)
    if (mine / FINAL).exists():
        return
    shared = reference_dir(ctx.cfg) / f"seed{seed}"
    shared.mkdir(parents=True, exist_ok=True)
    with locked(shared / ".lock"):  # another run may be training the same reference right now
        if not (shared / FINAL).exists():
            train_on_target(ctx, seed, "reference", FromScratch(), steps, shared, ctx.cfg.reference_every)
    for name in (CURVE, FINAL, STEPS):
        if (shared / name).exists():
            atomic_write_text((shared / name).read_text(), mine / name)
    atomic_write_text(json.dumps({"source": str(shared), "timesteps": steps}, indent=1), mine / "source.json")


def _run_scratch(cfg: ExperimentConfig) -> bool:
    return cfg.run_scratch


def _has_reference(cfg: ExperimentConfig) -> bool:
    return cfg.reference_steps is not None


class Scratch(Method):
    """Scratch on the target at the fine-tuning budget: the baseline every transfer is measured against."""

    name = "scratch"

    def stages(self) -> Sequence[Stage]:
        variant = Variant("scratch", "scratch on target", learning=True)
        return (Stage("scratch", scratch, on_target=True, variants=(variant,), enabled=_run_scratch),)


class Reference(Method):
    """The yardstick's "good": scratch on the target for `reference.timesteps` (queued first: it is the
    longest stage)."""

    name = "reference"
    section = "reference"

    def stages(self) -> Sequence[Stage]:
        variant = Variant("reference", "reference (scratch, long)", learning=True)
        return (
            Stage(
                "reference",
                reference,
                on_target=True,
                variants=(variant,),
                enabled=_has_reference,
                early=True,
            ),
        )
