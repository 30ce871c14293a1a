"""Training on the target, for every method that does: every step counted, one instance on an exclusive
target, evaluations on the shared grid, a final measurement - the learner decides only where the model
comes from (from scratch, or a source policy transferred and guarded: `methods.finetune`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from simreal.simulation.accounting import STEPS, TargetLedger, read_json
from simreal.training.engine.artifacts import save_policy
from simreal.training.engine.context import Context
from simreal.training.engine.evaluation import EvalResult, evaluate
from simreal.training.engine.loop import (
    Borrowed,
    EvalSchedule,
    curve_point,
    obs_rms_of,
    stateful,
    train_stage,
    write_hparams,
)
from simreal.training.engine.perception import Encoder
from simreal.training.engine.sb3.guards import KeepBest
from simreal.training.engine.sb3.loading import build_model
from simreal.training.engine.stage import (
    FINAL,
    POLICY,
    backbone_lr,
    policy_env,
    policy_meta,
    stage_hparams,
    write_final,
    write_steps,
)

log = logging.getLogger("simreal")

Hook = Callable[[int], None]
"""Called with the target step count as training goes (critic warm-up, gradual unfreezing)."""


@dataclass
class Built:
    """A model ready to train on the target: its context (a search may have chosen its settings), the vec
    env it trains on, its encoder, and what its artifact should record of where it came from."""

    ctx: Context
    model: BaseAlgorithm
    venv: VecEnv
    encoder: Encoder
    provenance: dict[str, str] = field(default_factory=dict)
    callbacks: list[BaseCallback] = field(default_factory=list)
    """SB3 callbacks that act while it trains; those with `key`, `state()` and `load()` are checkpointed
    and their state goes to `final.json` (e.g. the adaptive rate it reached)."""


@dataclass(frozen=True)
class Earlier:
    """Target interaction a variant spent before its own policy took over - calibration's episodes, say -
    counted in its budget: `steps` (whole rollouts: where its curve's step axis resumes), `ledger` (the
    target steps of it, by purpose) and `evaluation`, that of the policy that acted then (what the curve
    shows up to `steps`, its points marked `label`)."""

    steps: int
    ledger: dict[str, int]
    evaluation: EvalResult
    label: str

    def curve(self, grid: list[int]) -> list[dict[str, Any]]:
        """The curve's points before the takeover: the earlier policy's evaluation at every grid step
        below `steps`."""
        return [
            {**curve_point(step, self.evaluation), self.label: True} for step in grid if step < self.steps
        ]


class Learner(Protocol):
    """Where a target stage's model comes from, and what guards it."""

    def finished(self, ctx: Context, out: Path) -> None:
        """Called when the stage's outputs exist already (e.g. to check they came from this source)."""

    def keep(self, ctx: Context, out: Path) -> KeepBest | None:
        """The keep-best guard of the stage, if any."""

    def build(self, ctx: Context, seed: int, out: Path, ledger: TargetLedger, keep: KeepBest | None) -> Built:
        """The model on the target's vec env (its steps counted in `ledger`)."""

    def hooks(
        self,
        built: Built,
        seed: int,
        make_eval: Callable[[], gym.Env[Any, Any]],
        ledger: TargetLedger,
    ) -> list[Hook]:
        """What acts at given target steps while it trains."""


class FromScratch:
    """A fresh policy at the pretraining rate: scratch and the reference stage."""

    def finished(self, ctx: Context, out: Path) -> None:
        return None

    def keep(self, ctx: Context, out: Path) -> KeepBest | None:
        return None

    def build(self, ctx: Context, seed: int, out: Path, ledger: TargetLedger, keep: KeepBest | None) -> Built:
        cfg = ctx.cfg
        kwargs = ctx.target_kwargs(ledger)
        venv, encoder = policy_env(ctx, ctx.target_id, seed, cfg.target_n_envs, env_kwargs=kwargs)
        model = build_model(cfg.algo, venv, cfg.algo.pretrain_lr, ctx.device, seed, encoder)
        backbone_lr(ctx, model)
        return Built(ctx, model, venv, encoder)

    def hooks(
        self, built: Built, seed: int, make_eval: Callable[[], gym.Env[Any, Any]], ledger: TargetLedger
    ) -> list[Hook]:
        return []


def train_on_target(
    ctx: Context,
    seed: int,
    variant: str,
    learner: Learner,
    budget: int,
    out: Path,
    every: int | None = None,
) -> None:
    """Train `learner`'s model on the target for `budget` steps into `out`, evaluating every `every` steps
    (default `evaluation.every_steps`). Every target step is counted; on an exclusive target the one
    instance serves training, AdaBN and the evaluations alike."""
    torch.set_num_threads(ctx.cfg.torch_threads)  # results depend on it: fixed per stage
    if (out / FINAL).exists():
        learner.finished(ctx, out)
        return
    ledger = TargetLedger.resumed(read_json(out / STEPS))
    keep = learner.keep(ctx, out)
    built = learner.build(ctx, seed, out, ledger, keep)
    ctx, model, venv, encoder = built.ctx, built.model, built.venv, built.encoder
    cfg = ctx.cfg
    if cfg.exclusive:
        shared = Borrowed(venv.unwrapped.envs[0])  # type: ignore[attr-defined]
        make_eval: Callable[[], gym.Env[Any, Any]] = lambda: shared  # noqa: E731
    else:
        make_eval = lambda: ctx.make_target(ledger)  # noqa: E731
    hooks = learner.hooks(built, seed, make_eval, ledger)
    schedule_eval = EvalSchedule(
        make_eval,
        every or cfg.evaluation.every_steps,
        cfg.evaluation.episodes,
        ctx.eval_seed(seed),
        encoder,
        ctx.eval_envs,
        ledger=ledger,
        shares_training_env=cfg.exclusive,
        keep=keep,
    )
    log.info("%s seed %d on %s for %d target steps -> %s", variant, seed, ctx.target_id, budget, out)
    train_stage(
        model,
        budget,
        out,
        schedule_eval,
        cfg.checkpoint_every_steps,
        ctx.progress_bar,
        on_save=lambda: write_steps(out, ledger),
        hooks=hooks,
        callbacks=built.callbacks,
    )
    rms = keep.obs_rms if keep is not None else obs_rms_of(venv)
    meta = {**policy_meta(ctx, variant, seed, ctx.target_id, venv), **built.provenance}
    save_policy(model, rms, meta, out / POLICY, backbone=encoder.backbone_state())
    with ledger.doing("evaluation"):
        result = evaluate(
            model,
            make_eval,
            cfg.evaluation.final_episodes,
            ctx.eval_seed(seed, True),
            rms,
            encoder,
            ctx.eval_envs,
        )
    venv.close()
    write_steps(out, ledger)
    write_final(out, result, keep, stateful(built.callbacks))
    write_hparams(out, stage_hparams(ctx, variant, seed, budget), result)


def adapt_to_target(
    ctx: Context, encoder: Encoder, seed: int, make_env: Callable[[], gym.Env[Any, Any]], ledger: TargetLedger
) -> None:
    """AdaBN: re-estimate the frozen backbone's BatchNorm statistics on target frames (random actions).

    The frames are target interaction too, counted as "other" (and reserved with `count_in_budget`)."""
    perception = ctx.cfg.perception
    if perception is None or perception.adabn_frames == 0 or encoder.cached is None:
        return
    with ledger.doing("other"):
        env = make_env()
        env.action_space.seed(seed)
        frames = [encoder.images(env.reset(seed=ctx.eval_seed(seed) + 500)[0])]
        while len(frames) < perception.adabn_frames:
            obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
            frames.append(encoder.images(env.reset()[0] if terminated or truncated else obs))
        env.close()
    layers = encoder.cached.adapt_batchnorm(np.stack(frames))
    log.info("AdaBN seed %d: %d BatchNorm layers re-estimated on %d target frames", seed, layers, len(frames))


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path` for the duration (released when the process dies)."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
