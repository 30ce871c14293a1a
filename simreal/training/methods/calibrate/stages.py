"""Calibration's stages inside `simreal run` (with a `calibrate:` section), per seed:

1. `calibrate_collect` (on the target): `calibrate.episodes` episodes of the randomized policy, excited,
   every step counted, at most `calibrate.max_steps` (default half the training budget); then that
   policy's curve evaluation (what the calibrated variants' curves show while the calibration episodes
   ran). Writes `calibration/seed<N>/episodes.npz` and `collected.json`.
2. `calibrate_fit`: the fit (`simreal.simulation.calibration`); `calibration.json`, `calibration.md`,
   `calibrated_task.yaml` (named `<Task>Calibrated<digest>`: each seed's calibration is its own task),
   and TensorBoard's view of every identified value against its source range.
3. `pretrain_calibrated`: pretraining on the calibrated task's randomized sim, from scratch or warm-started
   from the randomized policy (`calibrate.warm_start`); its artifact says `calibrated_from: <Task>`.
4. `zeroshot_calibrated` and `finetune_calibrated` on the experiment's own target: the calibration's
   target steps are in their ledgers, and their curves resume after them (whole rollouts), so they are
   compared with the other variants at equal target budget. `finetune_calibrated` fine-tunes with the
   configured settings, without `finetune.auto`'s race (see the calibration guide).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from simreal.simulation.accounting import STEPS, TargetLedger
from simreal.simulation.calibration import calibrate
from simreal.simulation.calibration.recording import load_log
from simreal.simulation.tasks import load_task
from simreal.training.engine.artifacts import atomic_save_npz, atomic_write_text
from simreal.training.engine.context import Context, eval_grid
from simreal.training.engine.evaluation import EvalResult, evaluate
from simreal.training.engine.loop import CHECKPOINT, obs_rms_of
from simreal.training.engine.sb3.checkpoints import save_checkpoint
from simreal.training.engine.sb3.guards import KeepBest
from simreal.training.engine.sb3.loading import load_for_env
from simreal.training.engine.target import Built, Earlier, Hook, Learner, train_on_target
from simreal.training.methods.calibrate.collect import collect
from simreal.training.methods.calibrate.files import SUMMARY, TASK, log_to_tensorboard, write_calibration
from simreal.training.methods.finetune import Transferred
from simreal.training.methods.pretrain import pretrain
from simreal.training.methods.zeroshot import zero_shot

log = logging.getLogger("simreal")

CALIBRATION = "calibration"
"""The stage directory of a seed's calibration (`calibration/seed<N>`)."""
COLLECTED = "collected.json"
LABEL = "calibrating"
"""What marks a calibrated variant's curve points while the calibration episodes ran."""


def _config(ctx: Context) -> Any:
    assert ctx.cfg.calibrate is not None
    return ctx.cfg.calibrate


def max_steps(ctx: Context) -> int:
    """The most target steps the collection may take: `calibrate.max_steps`, else half the budget."""
    return _config(ctx).max_steps or ctx.train_budget // 2


def collect_stage(ctx: Context, seed: int, policy: Path) -> Path:
    """The randomized policy's calibration episodes on the target, then its curve evaluation."""
    torch.set_num_threads(ctx.cfg.torch_threads)
    out = ctx.stage_dir(CALIBRATION, seed)
    if (out / COLLECTED).is_file():
        return out
    c, ev = _config(ctx), ctx.cfg.evaluation
    ledger = TargetLedger()
    recording, returns = collect(
        policy, ctx.target_id, c.episodes, c.excite, seed, ctx.device, ledger, max_steps=max_steps(ctx)
    )
    collected = ledger.counts["other"]
    with ledger.doing("evaluation"):
        loaded = load_for_env(policy, lambda: gym.make(ctx.target_id, ledger=ledger), ctx.device, seed)
        before = evaluate(
            loaded.model,
            loaded.make_env,
            ev.episodes,
            ctx.eval_seed(seed),
            loaded.obs_rms,
            loaded.encoder,
            ctx.eval_envs,
        )
    out.mkdir(parents=True, exist_ok=True)
    atomic_save_npz(recording.arrays(), out / "episodes.npz")
    atomic_write_text(json.dumps(ledger.as_dict(), indent=1), out / STEPS)
    record = {
        "policy": str(policy),
        "episodes": len(recording.episodes),
        "episodes_asked": c.episodes,
        "excite": c.excite,
        "collected_steps": collected,
        "episode_returns": returns,
        "before": {k: np.asarray(v).tolist() for k, v in dataclasses.asdict(before).items()},
        "target_steps": ledger.as_dict(),
    }
    atomic_write_text(json.dumps(record, indent=1), out / COLLECTED)
    log.info(
        "calibrate seed %d: %d episodes, %d target steps -> %s", seed, len(recording.episodes), collected, out
    )
    return out


def fit_stage(ctx: Context, seed: int, out: Path) -> Path:
    """Fit the task to the collected episodes; write the calibration's files and TensorBoard values."""
    torch.set_num_threads(ctx.cfg.torch_threads)
    if (out / SUMMARY).is_file():
        return out
    c, collected = _config(ctx), json.loads((out / COLLECTED).read_text())
    result = calibrate(
        ctx.task,
        load_log(out / "episodes.npz"),
        mode=c.mode,
        params=c.params,
        seed=seed,
        where="calibrate",
        segments=c.segments,
        stds=c.stds,
        workers=c.workers,
    )
    digest = hashlib.sha256(json.dumps(result.task, sort_keys=True).encode()).hexdigest()[:8]
    task = {**result.task, "name": f"{ctx.cfg.task.name}Calibrated{digest}"}
    summary = {
        "policy": collected["policy"],
        "target": ctx.target_id,
        "excite": collected["excite"],
        **result.summary,
        "target_steps": collected["target_steps"],
        "collected_steps": collected["collected_steps"],
        "episode_returns": collected["episode_returns"],
    }
    log_to_tensorboard(out, summary, collected["collected_steps"])
    write_calibration(out, summary, task)
    log.info(
        "calibrate seed %d: gap %.2f -> %.2f, fit %.0f s",
        seed,
        summary["dynamics_gap_before"],
        summary["dynamics_gap_after"],
        summary["fit_seconds"],
    )
    return out


def calibrated_context(ctx: Context, calibration: Path) -> Context:
    """The experiment as pretraining on the calibrated task sees it (its own sim steps)."""
    c = _config(ctx)
    task = load_task(calibration / TASK, where=f"{calibration / TASK}")
    steps = c.timesteps or ctx.cfg.pretrain.timesteps
    pretrain_cfg = ctx.cfg.pretrain.model_copy(update={"timesteps": steps, "nominal_baseline": False})
    return dataclasses.replace(ctx, cfg=ctx.cfg.model_copy(update={"task": task, "pretrain": pretrain_cfg}))


def pretrain_stage(ctx: Context, seed: int, randomized: Path, calibration: Path) -> Path:
    init = randomized if _config(ctx).warm_start else None
    meta = {"calibrated_from": ctx.cfg.task.name, "calibration": str(calibration / SUMMARY)}
    cctx = calibrated_context(ctx, calibration)
    return pretrain(cctx, seed, True, "pretrain_calibrated", init=init, meta=meta)


def earlier(ctx: Context, calibration: Path) -> Earlier:
    """The calibration as the calibrated variants count it: its collection steps rounded up to whole
    rollouts of the target algorithm (SB3 trains in whole rollouts: the budget is never overrun), its
    ledger, and the randomized policy's evaluation."""
    collected = json.loads((calibration / COLLECTED).read_text())
    rollout = ctx.cfg.target_rollout
    steps = -(-int(collected["collected_steps"]) // rollout) * rollout
    before = EvalResult(**{k: np.asarray(v, dtype=np.float64) for k, v in collected["before"].items()})
    return Earlier(steps, collected["target_steps"], before, LABEL)


def zeroshot_stage(ctx: Context, seed: int, policy: Path, calibration: Path) -> None:
    zero_shot(ctx, policy, seed, "zeroshot_calibrated", earlier(ctx, calibration))


class AfterEarlier:
    """A learner whose training starts after earlier target steps: its first checkpoint holds the model
    at `earlier.steps` with the earlier policy's curve points on the evaluation grid of `budget`; its
    hooks (critic warm-up, gradual unfreezing) count from the takeover."""

    def __init__(self, inner: Learner, earlier: Earlier, budget: int) -> None:
        self.inner, self.earlier, self.budget = inner, earlier, budget

    def finished(self, ctx: Context, out: Path) -> None:
        self.inner.finished(ctx, out)

    def keep(self, ctx: Context, out: Path) -> KeepBest | None:
        return self.inner.keep(ctx, out)

    def build(self, ctx: Context, seed: int, out: Path, ledger: TargetLedger, keep: KeepBest | None) -> Built:
        built = self.inner.build(ctx, seed, out, ledger, keep)
        if not (out / CHECKPOINT).exists():
            every = ctx.cfg.evaluation.every_steps
            curve = self.earlier.curve(eval_grid(self.budget, every))
            built.model.num_timesteps = self.earlier.steps
            extra = {"curve": curve, "next_eval": curve[-1]["step"] + every}
            save_checkpoint(out / CHECKPOINT, built.model, obs_rms_of(built.venv), extra)
        return built

    def hooks(
        self, built: Built, seed: int, make_eval: Callable[[], gym.Env[Any, Any]], ledger: TargetLedger
    ) -> list[Hook]:
        offset = self.earlier.steps
        inner = self.inner.hooks(built, seed, make_eval, ledger)
        return [lambda step, hook=hook: hook(max(0, step - offset)) for hook in inner]  # type: ignore[misc]


def finetune_stage(ctx: Context, seed: int, policy: Path, calibration: Path) -> None:
    """The calibrated policy fine-tuned on the target for what the budget leaves after calibration."""
    variant = "finetune_calibrated"
    out = ctx.stage_dir(variant, seed)
    before = earlier(ctx, calibration)
    if not (out / STEPS).is_file():  # the calibration's steps open this variant's ledger
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json.dumps(before.ledger, indent=1), out / STEPS)
    fixed = ctx.cfg.finetune.model_copy(update={"auto": None})
    fctx = dataclasses.replace(ctx, cfg=ctx.cfg.model_copy(update={"finetune": fixed}))
    learner = AfterEarlier(Transferred(policy), before, ctx.train_budget)
    train_on_target(fctx, seed, variant, learner, ctx.train_budget, out)
