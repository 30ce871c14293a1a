"""The target stages: fine-tuning (with its guards), scratch and the reference stage - every step on the
target counted, the source's provenance checked, and on an exclusive target one instance for everything.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from simreal.simulation.accounting import STEPS, TargetLedger, read_json
from simreal.training import artifacts as art
from simreal.training import auto, guards
from simreal.training import transfer as tr
from simreal.training.artifacts import (
    ArtifactError,
    PolicyArtifact,
    atomic_write_text,
    check_spaces,
    file_sha256,
    load_policy,
    load_torch_state,
    save_policy,
)
from simreal.training.checkpoints import save_checkpoint
from simreal.training.context import Context
from simreal.training.evaluation import evaluate
from simreal.training.loading import build_model
from simreal.training.loop import (
    CHECKPOINT,
    CURVE,
    Borrowed,
    EvalSchedule,
    curve_point,
    obs_rms_of,
    train_stage,
    write_hparams,
)
from simreal.training.perception import Encoder
from simreal.training.reference import reference_dir
from simreal.training.schedules import WarmupDecaySchedule
from simreal.training.stages import (
    FINAL,
    POLICY,
    _backbone_lr,
    _meta,
    _write_final,
    policy_env,
    stage_hparams,
    write_steps,
)

log = logging.getLogger("simreal")


def _check_source(ctx: Context, source: Path, art: PolicyArtifact, out: Path) -> dict[str, str]:
    """Provenance of a fine-tuning: the source's path and content hash, recorded in `out/source.json`.

    Refused: a source pretrained on another task (spaces that happen to match are not the same robot)
    unless `finetune.allow_cross_task`; and an output directory made from a different source."""
    task = art.meta.get("task")
    if task != ctx.cfg.task.name and not ctx.cfg.finetune.allow_cross_task:
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
    schedule = WarmupDecaySchedule(cfg.finetune_lr, ft.lr_schedule, ft.lr_warmup_fraction)
    model = build_model(cfg.algo, venv, schedule, ctx.device, seed, encoder)
    load_torch_state(model, art.states, art.tensors, include_optimizers=False)
    tr.act_from_policy(model, cfg.finetune_learning_starts)
    if ft.reinit_heads:
        tr.reinit_heads(model, seed)
    if ft.freeze_features:
        tr.freeze_features(model)
    tr.freeze_layers(model, ft.freeze_layers)
    if ft.reset_entropy:
        tr.reset_entropy(model)
    tr.rebuild_optimizers(model)
    _backbone_lr(ctx, model)
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


def _target_training(
    ctx: Context,
    seed: int,
    variant: str,
    source: Path | None,
    budget: int,
    out: Path,
    every: int | None = None,
) -> None:
    """Fine-tune `source` (or train from scratch when None) on the target for `budget` steps into `out`,
    evaluating every `every` steps (default `evaluation.every_steps`). Every target step is counted;
    on an exclusive target the one instance serves training, AdaBN and the evaluations alike."""
    torch.set_num_threads(ctx.cfg.torch_threads)  # results depend on it: fixed per stage
    if (out / FINAL).exists():
        if source is not None:
            _check_source(ctx, source, load_policy(source, ctx.device), out)
        return
    ledger = TargetLedger.resumed(read_json(out / STEPS))
    env_kwargs = ctx.target_kwargs(ledger)
    provenance: dict[str, str] = {}
    found: auto.SearchResult | None = None
    keep = (
        guards.KeepBest(ctx.cfg.finetune.patience, path=out / "best.pt")
        if source and ctx.cfg.finetune.keep_best
        else None
    )
    if source is not None and ctx.cfg.finetune.auto is not None:
        winner = auto.winner_of(ctx, out)
        if winner is None:  # search first (its steps are counted in the ledger), then go on with the winner
            found = auto.search(
                ctx,
                seed,
                lambda c: _transferred(c, seed, source, out, c.target_kwargs(ledger))[:2],
                ledger,
                out,
                keep,
            )
            winner = found.ctx
        ctx = winner
    cfg = ctx.cfg
    if source is None:
        venv, encoder = policy_env(ctx, ctx.target_id, seed, cfg.target_n_envs, env_kwargs=env_kwargs)
        model = build_model(cfg.algo, venv, cfg.algo.pretrain_lr, ctx.device, seed, encoder)
        _backbone_lr(ctx, model)
    else:
        model, venv, encoder, provenance = _transferred(ctx, seed, source, out, env_kwargs)
        if found is not None:
            _continue_winner(model, found, out, cfg.evaluation.every_steps)
    if cfg.exclusive:
        shared = Borrowed(venv.unwrapped.envs[0])  # type: ignore[attr-defined]
        make_eval: Callable[[], gym.Env[Any, Any]] = lambda: shared  # noqa: E731
    else:
        make_eval = lambda: ctx.make_target(ledger)  # noqa: E731
    hooks: list[Callable[[int], None]] = []
    if source is not None:
        adapt_to_target(ctx, encoder, seed, make_eval, ledger)
        hooks = _guard_hooks(ctx, model)
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
    )
    rms = keep.obs_rms if keep is not None else obs_rms_of(venv)
    meta = {**_meta(ctx, variant, seed, ctx.target_id, venv), **provenance}
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
    _write_final(out, result, keep)
    write_hparams(out, stage_hparams(ctx, variant, seed, budget), result)


def _continue_winner(model: BaseAlgorithm, found: auto.SearchResult, out: Path, every: int) -> None:
    """The winner's weights, optimizers and replay buffer in the stage's model, at the step the search
    reached, checkpointed at once with the curve so far (the source's evaluation over the search)."""
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
    save_checkpoint(
        out / CHECKPOINT,
        model,
        obs_rms_of(env),
        {"curve": curve, "next_eval": curve[-1]["step"] + every},
    )


def _guard_hooks(ctx: Context, model: BaseAlgorithm) -> list[Callable[[int], None]]:
    """The guards that act at given target steps: critic warm-up, gradual unfreezing."""
    ft = ctx.cfg.finetune
    hooks: list[Callable[[int], None]] = []
    if ft.critic_warmup_steps > 0:
        hooks.append(guards.CriticWarmup(model, ft.critic_warmup_steps).update)
    if ft.unfreeze_schedule:
        hooks.append(guards.GradualUnfreeze(model, ft.freeze_layers, ft.unfreeze_schedule).update)
    return hooks


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


def finetune(ctx: Context, source: Path, seed: int, variant: str = "finetune") -> None:
    _target_training(ctx, seed, variant, source, ctx.train_budget, ctx.stage_dir(variant, seed))


def scratch(ctx: Context, seed: int) -> None:
    _target_training(ctx, seed, "scratch", None, ctx.train_budget, ctx.stage_dir("scratch", seed))


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
    with _locked(shared / ".lock"):  # another run may be training the same reference right now
        if not (shared / FINAL).exists():
            _target_training(ctx, seed, "reference", None, steps, shared, ctx.cfg.reference_every)
    for name in (CURVE, FINAL, STEPS):
        if (shared / name).exists():
            atomic_write_text((shared / name).read_text(), mine / name)
    atomic_write_text(json.dumps({"source": str(shared), "timesteps": steps}, indent=1), mine / "source.json")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path` for the duration (released when the process dies)."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
