"""A user's own transfer method, kept outside the package: fine-tune only the last layer (a linear probe
on the pretrained features), with its own config section. Named in a config as
`methods: [user_methods:LinearProbe]`; tests/test_methods.py runs it through `simreal run`."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field

from simreal.schema import Spec
from simreal.training.engine import Method, Stage, Variant
from simreal.training.engine.context import Context
from simreal.training.methods.finetune import finetune


class LinearProbeConfig(Spec):
    """The `linear_probe:` section."""

    lr_factor: float = Field(default=1.0, gt=0)


def linear_probe(ctx: Context, seed: int, source: Path) -> None:
    """Every hidden layer frozen, the output layer trained at `linear_probe.lr_factor`."""
    cfg = ctx.cfg
    probe: LinearProbeConfig = cfg.section("linear_probe")
    tuned = cfg.finetune.model_copy(
        update={"freeze_layers": cfg.algo.hidden_layers, "lr_factor": probe.lr_factor, "learning_rate": None}
    )
    probing = dataclasses.replace(ctx, cfg=cfg.model_copy(update={"finetune": tuned}))
    finetune(probing, source, seed, "linear_probe")


class LinearProbe(Method):
    name = "linear_probe"
    section = "linear_probe"
    config = LinearProbeConfig

    def stages(self) -> Sequence[Stage]:
        variant = Variant(
            "linear_probe",
            "linear probe (last layer only)",
            learning=True,
            beats=(("finetune", "probe_beats_finetune"),),
        )
        return (Stage("linear_probe", linear_probe, ("pretrain_randomized",), True, (variant,)),)


def _nothing(ctx: Context, seed: int) -> None:
    return None


class Clash(Method):
    """Declares a variant the packaged fine-tuning already reports."""

    name = "clash"

    def stages(self) -> Sequence[Stage]:
        return (Stage("clash", _nothing, variants=(Variant("finetune", "another fine-tune"),)),)


class Loop(Method):
    """Two stages that each wait for the other."""

    name = "loop"

    def stages(self) -> Sequence[Stage]:
        return (Stage("ping", _nothing, ("pong",)), Stage("pong", _nothing, ("ping",)))


class Orphan(Method):
    """A stage after one nobody declares."""

    name = "orphan"

    def stages(self) -> Sequence[Stage]:
        return (Stage("orphan", _nothing, ("pretrain_imaginary",)),)


NOT_A_METHOD = 42
