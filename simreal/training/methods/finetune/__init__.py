"""Fine-tuning: the randomized source policy transferred to the target and trained there, guarded.

The transfer (`Transferred.build`): weights copied, the features extractor and the lowest
`freeze_layers` frozen, optimizers rebuilt at `finetune.lr_factor` x the pretraining rate, the guards
attached (L2-SP, layer-wise rate decay, critic warm-up, gradual unfreezing, keep-best; see
`simreal.training.engine.sb3.guards`) and, with `finetune.auto`, the settings chosen on the target first
(`auto`). The source's provenance is checked and recorded (`source.json`). Stage `finetune`, after
`pretrain_randomized`; `finetune(ctx, source, seed, variant)` serves other methods' policies too (a
distilled student, `simreal finetune`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from simreal.config import ExperimentConfig
from simreal.simulation.accounting import TargetLedger
from simreal.training.engine import artifacts as art
from simreal.training.engine.artifacts import (
    ArtifactError,
    PolicyArtifact,
    atomic_write_text,
    check_spaces,
    file_sha256,
    load_policy,
    load_torch_state,
)
from simreal.training.engine.context import Context
from simreal.training.engine.loop import CHECKPOINT, curve_point, obs_rms_of
from simreal.training.engine.method import Method, Stage, Variant
from simreal.training.engine.perception import Encoder
from simreal.training.engine.sb3 import guards
from simreal.training.engine.sb3 import transfer as tr
from simreal.training.engine.sb3.adaptive import rate_callback
from simreal.training.engine.sb3.checkpoints import save_checkpoint
from simreal.training.engine.sb3.loading import build_model
from simreal.training.engine.schedules import AdaptiveRate, WarmupDecaySchedule
from simreal.training.engine.stage import backbone_lr, policy_env
from simreal.training.engine.target import Built, FromScratch, Hook, adapt_to_target, train_on_target
from simreal.training.methods.finetune import auto

log = logging.getLogger("simreal")


def _check_source(ctx: Context, source: Path, art: PolicyArtifact, out: Path) -> dict[str, str]:
    """Provenance of a fine-tuning: the source's path and content hash, recorded in `out/source.json`.

    Refused: a source pretrained on another task (spaces that happen to match are not the same robot)
    unless `finetune.allow_cross_task` - a task calibrated from this one's target data is the same robot
    (`calibrated_from` in its metadata), and a multi-task policy pretrained for it was meant for it
    (`pretrained_for`); and an output directory made from a different source."""
    task = art.meta.get("task")
    ours = ctx.cfg.task.name in (task, art.meta.get("calibrated_from"), art.meta.get("pretrained_for"))
    if not ours and not ctx.cfg.finetune.allow_cross_task:
        raise ArtifactError(
            f"{source}: pretrained on task {task!r}, not {ctx.cfg.task.name!r} (its spaces fit, but it "
            "learned another task; pass --allow-cross-task, or set finetune.allow_cross_task, to fine-tune "
            "it anyway)"
        )
    had, asked = (
        (art.meta.get("observation") or {}).get("action_history", 0),
        ctx.cfg.observation.action_history,
    )
    if had != asked:
        raise ArtifactError(
            f"{source}: trained with observation.action_history={had}, this experiment sets {asked}: the "
            f"policy reads {had or 'no'} past actions (allowed: observation.action_history={had})"
        )
    provenance = {"source_policy": str(source), "source_sha256": file_sha256(source)}
    recorded = out / "source.json"
    if recorded.is_file():
        before = json.loads(recorded.read_text())
        if before["source_sha256"] != provenance["source_sha256"]:
            raise ArtifactError(
                f"{out}: made by fine-tuning {before['source_policy']} "
                f"(sha256 {before['source_sha256'][:12]}), not {source} "
                f"(sha256 {provenance['source_sha256'][:12]}) (allowed: another experiment name, or "
                "remove it)"
            )
    else:
        atomic_write_text(json.dumps(provenance, indent=1), recorded)
    return provenance


def learning_rate(cfg: ExperimentConfig) -> WarmupDecaySchedule | AdaptiveRate:
    """The fine-tuning rate as the schedule SB3 reads at every update: fixed (with its warm-up and decay),
    or `adaptive`, steered by the policy's KL within `cfg.finetune_lr_bounds`."""
    ft = cfg.finetune
    schedule = cfg.finetune_lr_schedule
    if schedule == "adaptive":
        return AdaptiveRate(cfg.finetune_lr, ft.target_kl, *cfg.finetune_lr_bounds)
    return WarmupDecaySchedule(cfg.finetune_lr, schedule, ft.lr_warmup_fraction)


def _transferred(
    ctx: Context, seed: int, source: Path, out: Path, env_kwargs: dict[str, Any]
) -> tuple[BaseAlgorithm, VecEnv, Encoder, dict[str, str]]:
    """The source policy on the target's vec env: weights copied, layers frozen, optimizers rebuilt."""
    cfg, ft = ctx.cfg, ctx.cfg.finetune
    art = load_policy(source, ctx.device)
    provenance = _check_source(ctx, source, art, out)
    venv, encoder = policy_env(
        ctx,
        ctx.target_id,
        seed,
        n_envs=cfg.target_n_envs,
        obs_rms=None if ft.obs_norm == "reset" else art.obs_rms,
        update_stats=ft.obs_norm != "keep",
        env_kwargs=env_kwargs,
    )
    encoder.load_backbone_state(art.backbone)
    check_spaces(art.meta, venv.observation_space, venv.action_space)
    model = build_model(cfg.algo, venv, learning_rate(cfg), ctx.device, seed, encoder)
    load_torch_state(model, art.states, art.tensors, include_optimizers=False)
    tr.act_from_policy(model, cfg.finetune_learning_starts)
    if ft.reinit_heads:
        tr.reinit_heads(model, seed)
    if ft.freeze_features:
        tr.freeze_features(model)
    tr.freeze_layers(model, ft.freeze_layers)
    if ft.reset_entropy:
        tr.reset_entropy(model)
    if ft.action_std_floor is not None:
        tr.floor_action_std(model, ft.action_std_floor)
    tr.rebuild_optimizers(model)
    backbone_lr(ctx, model)
    guards.layer_lr_decay(model, ft.layer_lr_decay)
    if ft.l2sp > 0:
        guards.L2SP(model, ft.l2sp, skip=tr.head_parameters(model) if ft.reinit_heads else ())
    summary = tr.summarize(model)
    log.info(
        "transfer seed %d: %d of %d parameters trainable, lr %.2e",
        seed,
        summary.trainable_params,
        summary.total_params,
        cfg.finetune_lr,
    )
    return model, venv, encoder, provenance


def _continue_winner(model: BaseAlgorithm, found: auto.SearchResult, out: Path, every: int) -> None:
    """The winner's weights, optimizers and replay buffer in the stage's model, at the step the search
    reached, checkpointed at once with the curve so far (the source's evaluation over the search) and,
    with an adaptive rate, the rate it reached."""
    states, tensors = art.torch_state(found.model)
    art.load_torch_state(model, states, tensors, include_optimizers=True)
    if hasattr(found.model, "replay_buffer") and found.model.replay_buffer is not None:
        model.replay_buffer = found.model.replay_buffer  # type: ignore[attr-defined]
    model.num_timesteps = found.spent
    env = found.model.get_env()  # its observation statistics, where they are re-estimated
    assert env is not None
    curve = [
        {**curve_point(step, found.at_start), "exploring": True} for step in range(0, found.spent + 1, every)
    ]
    extra: dict[str, Any] = {"curve": curve, "next_eval": curve[-1]["step"] + every}
    if found.steer is not None:  # a stage resumed from here goes on from the rate the winner reached
        extra["callbacks"] = {found.steer.key: found.steer.state()}
    save_checkpoint(out / CHECKPOINT, model, obs_rms_of(env), extra)


def _guard_hooks(ctx: Context, model: BaseAlgorithm) -> list[Callable[[int], None]]:
    """The guards that act at given target steps: critic warm-up, gradual unfreezing."""
    ft = ctx.cfg.finetune
    hooks: list[Callable[[int], None]] = []
    if ft.critic_warmup_steps > 0:
        hooks.append(guards.CriticWarmup(model, ft.critic_warmup_steps).update)
    if ft.unfreeze_schedule:
        hooks.append(guards.GradualUnfreeze(model, ft.freeze_layers, ft.unfreeze_schedule).update)
    return hooks


class Transferred:
    """The learner of a fine-tuning stage: the source policy on the target, its guards, its search."""

    def __init__(self, source: Path) -> None:
        self.source = source

    def finished(self, ctx: Context, out: Path) -> None:
        _check_source(ctx, self.source, load_policy(self.source, ctx.device), out)

    def keep(self, ctx: Context, out: Path) -> guards.KeepBest | None:
        ft = ctx.cfg.finetune
        return (
            guards.KeepBest(ft.patience, ft.keep_best_margin, path=out / "best.pt") if ft.keep_best else None
        )

    def build(
        self, ctx: Context, seed: int, out: Path, ledger: TargetLedger, keep: guards.KeepBest | None
    ) -> Built:
        source = self.source
        found: auto.SearchResult | None = None
        setting: dict[str, Any] = {}
        if ctx.cfg.finetune.auto is not None and len(ctx.cfg.finetune.auto.settings()) > 1:
            earlier = auto.winner_of(ctx, out)
            if (
                earlier is None
            ):  # race first (its steps are counted in the ledger), then go on with the winner

                def candidate(c: Context, s: dict[str, Any]) -> tuple[BaseAlgorithm, VecEnv]:
                    made = _made(c, seed, source, out, ledger, s)
                    return made.model, made.venv

                found = auto.search(ctx, seed, candidate, ledger, out, keep)
                ctx, setting = found.ctx, found.setting
            else:
                ctx, setting = earlier
        elif ctx.cfg.finetune.auto is not None:  # one candidate: nothing to race, it is the setting
            setting = ctx.cfg.finetune.auto.settings()[0]
            ctx = dataclasses.replace(ctx, cfg=auto.with_setting(ctx.cfg, setting))
        built = _made(ctx, seed, source, out, ledger, setting)
        if found is not None:
            _continue_winner(built.model, found, out, ctx.cfg.evaluation.every_steps)
        # after a race, the loop loads the rate the winner reached from `_continue_winner`'s checkpoint
        steer = rate_callback(built.model, ctx.cfg.finetune.kl_window, seed)
        if steer is not None:
            built.callbacks.append(steer)
        return built

    def hooks(
        self, built: Built, seed: int, make_eval: Callable[[], gym.Env[Any, Any]], ledger: TargetLedger
    ) -> list[Hook]:
        adapt_to_target(built.ctx, built.encoder, seed, make_eval, ledger)
        return _guard_hooks(built.ctx, built.model)


def _made(
    ctx: Context, seed: int, source: Path, out: Path, ledger: TargetLedger, setting: dict[str, Any]
) -> Built:
    """A fine-tuning model: the source transferred - or, for a `finetune.auto` candidate with `init:
    scratch`, a fresh policy at the pretraining rate (what the stage deploys if it wins: negative
    transfer escaped)."""
    if setting.get("init") == "scratch":
        fresh = FromScratch().build(ctx, seed, out, ledger, None)
        fresh.provenance = {"init": "scratch", "raced_against": str(source)}
        return fresh
    model, venv, encoder, provenance = _transferred(ctx, seed, source, out, ctx.target_kwargs(ledger))
    return Built(ctx, model, venv, encoder, provenance)


def finetune(ctx: Context, source: Path, seed: int, variant: str = "finetune") -> None:
    """Fine-tune the policy at `source` on the target for the training budget, into stage `variant`."""
    train_on_target(ctx, seed, variant, Transferred(source), ctx.train_budget, ctx.stage_dir(variant, seed))


def finetune_stage(ctx: Context, seed: int, source: Path) -> None:
    finetune(ctx, source, seed)


class Finetune(Method):
    """Fine-tuning the randomized policy on the target, compared with scratch at the same budget."""

    name = "finetune"
    section = "finetune"

    def stages(self) -> Sequence[Stage]:
        variant = Variant(
            "finetune",
            "fine-tune (randomized -> target)",
            learning=True,
            beats=(("scratch", "finetune_beats_scratch"),),
            below=(("zeroshot_randomized", "finetune_below_zeroshot"),),
        )
        return (Stage("finetune", finetune_stage, ("pretrain_randomized",), True, (variant,)),)

    def reserve_episodes(self, cfg: ExperimentConfig) -> int:
        """The race's selection episodes, and its evaluation of the source."""
        return auto.selection_episodes(cfg)

    def preflight(self, ctx: Context) -> None:
        """`finetune.auto` must give every candidate at least one rollout in every round."""
        auto.check_budget(ctx)
