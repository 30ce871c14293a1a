"""Meta-learning: an initialization trained to be fine-tuned (Reptile, first-order), compared with the
randomized one on the target.

Stages (with a `meta:` section): `pretrain_meta` (after `pretrain_randomized`; see `stages`), then
`zeroshot_meta` and `finetune_meta` on the target - the same evaluation seeds, the same fine-tuning, the
same budget as `finetune`. The initialization's simulation steps (its start and the inner loops) are in
its artifact, `pretrain_meta/seed<N>/meta.json` and the report, so equal-compute comparisons can be made.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from simreal.config import ExperimentConfig
from simreal.training.engine.context import Context
from simreal.training.engine.method import Method, Stage, transfer_stages
from simreal.training.methods.finetune import finetune
from simreal.training.methods.meta.stages import pretrain_meta
from simreal.training.methods.zeroshot import zero_shot


def _metas(cfg: ExperimentConfig) -> bool:
    return cfg.meta is not None


def meta_stage(ctx: Context, seed: int, randomized: Path) -> Path:
    return pretrain_meta(ctx, seed, randomized)


def zeroshot_meta(ctx: Context, seed: int, policy: Path) -> None:
    zero_shot(ctx, policy, seed, "zeroshot_meta")


def finetune_meta(ctx: Context, seed: int, policy: Path) -> None:
    finetune(ctx, policy, seed, "finetune_meta")


class Meta(Method):
    """A meta-learned initialization, zero-shot and fine-tuned on the target like the randomized one."""

    name = "meta"
    section = "meta"

    def stages(self) -> Sequence[Stage]:
        labels = ("zero-shot meta-learned", "fine-tune meta-learned (Reptile -> target)")
        return (
            Stage("pretrain_meta", meta_stage, ("pretrain_randomized",), enabled=_metas),
            *transfer_stages("meta", labels, zeroshot_meta, finetune_meta, ("pretrain_meta",), _metas),
        )
