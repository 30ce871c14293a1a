"""Zero-shot transfer: a pretrained policy evaluated on the target with no target training.

Stages `zeroshot_randomized` (after `pretrain_randomized`) and `zeroshot_nominal` (after
`pretrain_nominal`), evaluated exactly like the target-trained variants, on the same episode seeds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import gymnasium as gym
import torch

from simreal.simulation.accounting import TargetLedger
from simreal.simulation.observation import ObservationConfig
from simreal.training.engine.artifacts import atomic_write_text
from simreal.training.engine.context import Context, eval_grid
from simreal.training.engine.evaluation import evaluate
from simreal.training.engine.events import keep_before
from simreal.training.engine.loop import CURVE, curve_point, record_evaluation, stage_logger, write_hparams
from simreal.training.engine.method import Method, Stage, Variant
from simreal.training.engine.sb3.loading import load_for_env
from simreal.training.engine.stage import FINAL, stage_hparams, write_final, write_steps
from simreal.training.engine.target import Earlier


def zero_shot(
    ctx: Context,
    policy: Path,
    seed: int,
    variant: str,
    earlier: Earlier | None = None,
    observation: ObservationConfig | None = None,
) -> None:
    """Evaluate a pretrained policy on the target without any target training.

    Evaluated exactly like the target-trained variants: the curve evaluation (`evaluation.episodes` on
    the curve's episode seeds) and the final one (`final_episodes` on the final seeds). Its weights never
    change, so the curve holds that one evaluation at every step of the fine-tuning grid - what
    evaluating it there would give - and equals fine-tuning's own step-0 evaluation of the same weights.
    With `earlier` (target steps the policy needed before it existed: calibration's), those steps are in
    its ledger and its curve shows the earlier policy up to them. `observation`: what the policy sees of
    the target, where the experiment decides it rather than the artifact (a multi-task policy's held-out
    id)."""
    torch.set_num_threads(ctx.cfg.torch_threads)  # results depend on it: fixed per stage
    out = ctx.stage_dir(variant, seed)
    if (out / FINAL).exists():
        return
    ev = ctx.cfg.evaluation
    ledger = TargetLedger.resumed(earlier.ledger if earlier else None)
    ledger.purpose = "evaluation"
    loaded = load_for_env(
        policy, lambda: gym.make(ctx.target_id, ledger=ledger), ctx.device, seed, observation
    )
    run = {"obs_rms": loaded.obs_rms, "encoder": loaded.encoder, "n_envs": ctx.eval_envs}
    at_start = evaluate(loaded.model, loaded.make_env, ev.episodes, ctx.eval_seed(seed), **run)
    keep_before(out, 0)  # an interrupted attempt's curve: logged again below
    logger = stage_logger(out, None)
    grid = eval_grid(ctx.train_budget, ev.every_steps)
    curve = earlier.curve(grid) if earlier else []
    for point in curve:
        record_evaluation(logger, earlier.evaluation)  # type: ignore[union-attr]
        logger.dump(point["step"])
    for step in grid[len(curve) :]:
        record_evaluation(logger, at_start)
        logger.dump(step)
        curve.append(curve_point(step, at_start))
    logger.close()
    atomic_write_text(json.dumps(curve, indent=1), out / CURVE)
    result = evaluate(loaded.model, loaded.make_env, ev.final_episodes, ctx.eval_seed(seed, True), **run)
    write_steps(out, ledger)
    write_final(out, result)
    write_hparams(out, stage_hparams(ctx, variant, seed, 0), result)


def zeroshot_randomized(ctx: Context, seed: int, policy: Path) -> None:
    zero_shot(ctx, policy, seed, "zeroshot_randomized")


def zeroshot_nominal(ctx: Context, seed: int, policy: Path) -> None:
    zero_shot(ctx, policy, seed, "zeroshot_nominal")


class ZeroShot(Method):
    """The randomized and the nominal policy on the target, untouched."""

    name = "zeroshot"

    def stages(self) -> Sequence[Stage]:
        randomized = Variant(
            "zeroshot_randomized",
            "zero-shot randomized",
            beats=(("zeroshot_nominal", "randomized_beats_nominal_zeroshot"),),
        )
        return (
            Stage("zeroshot_randomized", zeroshot_randomized, ("pretrain_randomized",), True, (randomized,)),
            Stage(
                "zeroshot_nominal",
                zeroshot_nominal,
                ("pretrain_nominal",),
                True,
                (Variant("zeroshot_nominal", "zero-shot nominal"),),
            ),
        )
