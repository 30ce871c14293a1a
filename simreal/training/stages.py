"""The source stages and the shared pieces of every stage: pretraining, zero-shot evaluation, artifacts.

`pretrain` (randomized or nominal source) and `zero_shot` (a pretrained policy on the target, no
training); the target-training stages are in `target`. Each stage is skipped when its outputs exist,
which is what makes `--resume` work. The run directory's layout::

    runs/<experiment>/config.yaml                      resolved config (the task inline)
    runs/<experiment>/<variant>/seed<N>/               TensorBoard events, checkpoint.pt, policy.pt,
                                                       curve.json, final.json, target_steps.json
    runs/<experiment>/report.json, report.md, curves.png
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from simreal.simulation.accounting import STEPS, TargetLedger
from simreal.simulation.adr import AdrState
from simreal.simulation.privileged import history_layout
from simreal.training import guards
from simreal.training import transfer as tr
from simreal.training.artifacts import (
    atomic_write_text,
    describe_space,
    save_policy,
)
from simreal.training.context import Context, eval_grid
from simreal.training.evaluation import EvalResult, evaluate
from simreal.training.features import VecFrozenFeatures
from simreal.training.loading import build_model, load_for_env
from simreal.training.loop import (
    CURVE,
    curve_point,
    make_vec,
    normalized,
    obs_rms_of,
    record_evaluation,
    stage_logger,
    train_stage,
    write_hparams,
)
from simreal.training.perception import Encoder, attach, env_space

log = logging.getLogger("simreal")

POLICY = "policy.pt"
FINAL = "final.json"
VARIANTS = (
    "finetune",
    "scratch",
    "zeroshot_randomized",
    "zeroshot_nominal",
    "reference",
    "zeroshot_student",
    "finetune_student",
)


def stage_hparams(ctx: Context, variant: str, seed: int, budget: int) -> dict[str, Any]:
    """A stage's settings for TensorBoard's HParams table (runs and sweep trials side by side)."""
    cfg, ft = ctx.cfg, ctx.cfg.finetune
    hparams: dict[str, Any] = {
        "task": cfg.task.name,
        "target": cfg.target,
        "variant": variant,
        "seed": seed,
        "algo": cfg.algo.name,
        "net_arch": str(cfg.algo.net_arch),
        "target_steps": budget,
        "pretrain_steps": cfg.pretrain.timesteps,
        "learning_rate": cfg.finetune_lr if variant.startswith("finetune") else cfg.algo.pretrain_lr,
    }
    if variant.startswith("finetune"):
        hparams.update(
            lr_factor=ft.lr_factor,
            lr_schedule=ft.lr_schedule,
            freeze_features=ft.freeze_features,
            freeze_layers=ft.freeze_layers,
            reinit_heads=ft.reinit_heads,
            obs_norm=ft.obs_norm,
        )
    return hparams


def _backbone_lr(ctx: Context, model: BaseAlgorithm) -> None:
    """Unfrozen backbone blocks train at `perception.backbone_lr_factor` x the policy's rate."""
    perception = ctx.cfg.perception
    if perception is not None and perception.unfreeze_last > 0:
        n = tr.scale_backbone_lr(model, perception.backbone_lr_factor)
        if n:  # none to rescale at factor 1: the unfrozen blocks train at the policy's rate
            log.info("%d backbone parameters at %.2g x the learning rate", n, perception.backbone_lr_factor)


def policy_env(
    ctx: Context,
    env_id: str,
    seed: int,
    n_envs: int | None = None,
    obs_rms: Any = None,
    update_stats: bool = True,
    env_kwargs: dict[str, Any] | None = None,
    subproc: bool = False,
) -> tuple[VecEnv, Encoder]:
    """The vec env a policy trains on (observation wrappers, normalization, perception) and its encoder.
    `subproc`: its envs in their own processes (pretraining on the source sim asks for it with
    `algo.vec_env: subproc`; a target's steps are counted, and an exclusive target held, in this one)."""
    algo = ctx.cfg.algo
    n = n_envs or algo.n_envs
    register = ctx.cfg.task if subproc else None
    perception = ctx.cfg.perception
    # With a backbone, normalization (if any) applies to what the policy reads: the cached features.
    norm = algo.normalize_obs and perception is None
    venv = make_vec(env_id, n, seed, norm, obs_rms, update_stats, ctx.wrapper, env_kwargs, register)
    venv, encoder = attach(perception, venv, ctx.device)
    if perception is not None:
        venv = normalized(venv, algo.normalize_obs, obs_rms, update_stats)
    return venv, encoder


def batched_env(ctx: Context, randomized: bool, seed: int, adr: AdrState | None = None) -> VecEnv:
    """The source sim as `algo.n_envs` worlds of one MuJoCo Warp model, observed as `policy_env` would
    observe it (action history, normalization; `sim_backend: warp`)."""
    from simreal.simulation.batched import make_batched
    from simreal.simulation.batched.history import VecActionHistory

    algo, obs = ctx.cfg.algo, ctx.cfg.observation
    venv: VecEnv = make_batched(ctx.task, randomized, algo.n_envs, seed, ctx.device, adr)
    if obs.action_history:
        venv = VecActionHistory(venv, obs.action_history)
    return normalized(venv, algo.normalize_obs, None, True)


def _meta(ctx: Context, variant: str, seed: int, env_id: str, venv: VecEnv) -> dict[str, Any]:
    """What a policy artifact records besides its weights: where it came from and how to rebuild it
    (a distilled student's, also how its history window is filled)."""
    k = ctx.cfg.observation.history_window
    history = history_layout(env_space(venv), venv.action_space, k) if k else None  # type: ignore[arg-type]
    return {
        **({"history": history} if history else {}),
        "variant": variant,
        "seed": seed,
        "env_id": env_id,
        "task": ctx.cfg.task.name,
        "target": ctx.cfg.target,
        "algo": ctx.cfg.algo.model_dump(mode="json"),
        "observation": ctx.cfg.observation.model_dump(mode="json"),
        "perception": ctx.cfg.perception.model_dump(mode="json") if ctx.cfg.perception else None,
        "pixels": ctx.cfg.pixels,
        "env_observation_space": describe_space(env_space(venv)),
        **({"observation_layout": layout} if (layout := _layout(venv)) else {}),
    }


def _layout(venv: VecEnv) -> dict[str, list[int]] | None:
    """Where each entry of a Dict pixel observation sits in the flat vector the policy reads (cached
    features first, then the other entries: `VecFrozenFeatures.layout`); None for other observations."""
    inner = venv.venv if isinstance(venv, VecNormalize) else venv
    if isinstance(inner, VecFrozenFeatures) and len(inner.layout) > 1:
        return {key: [start, stop] for key, (start, stop) in inner.layout.items()}
    return None


def pretrain(ctx: Context, seed: int, randomized: bool, variant: str | None = None) -> Path:
    """Train on the randomized (or nominal) source sim; returns the policy artifact path. `variant`
    names the stage directory (default `pretrain_randomized` / `pretrain_nominal`)."""
    torch.set_num_threads(ctx.cfg.torch_threads)  # results depend on it: fixed per stage
    variant = variant or ("pretrain_randomized" if randomized else "pretrain_nominal")
    out = ctx.stage_dir(variant, seed)
    if (out / POLICY).exists():
        return out / POLICY
    env_id = ctx.source_id(randomized)
    algo = ctx.cfg.pretrain_algo
    spec = ctx.cfg.task.randomization
    adr = AdrState.for_entries(spec.adr, spec.params) if randomized and spec.adr is not None else None
    if ctx.cfg.sim_backend == "warp":
        venv, encoder = batched_env(ctx, randomized, seed, adr), Encoder({})
    else:
        kwargs = None if adr is None else {"adr": adr}
        venv, encoder = policy_env(ctx, env_id, seed, env_kwargs=kwargs, subproc=algo.vec_env == "subproc")
    model = build_model(algo, venv, algo.pretrain_lr, ctx.device, seed, encoder)
    _backbone_lr(ctx, model)
    log.info(
        "pretrain %s seed %d on %s for %d steps -> %s", variant, seed, env_id, ctx.cfg.pretrain.timesteps, out
    )
    train_stage(
        model,
        ctx.cfg.pretrain.timesteps,
        out,
        None,
        ctx.cfg.checkpoint_every_steps,
        ctx.progress_bar,
        log_dynamics=randomized,
        adr=adr,
    )
    meta = {
        **_meta(ctx, variant, seed, env_id, venv),
        "adr": None if adr is None else adr.as_dict(),
        "sim_backend": ctx.cfg.sim_backend,
        "pretrain_algo_kwargs": algo.kwargs,
    }
    save_policy(model, obs_rms_of(venv), meta, out / POLICY, backbone=encoder.backbone_state())
    venv.close()
    return out / POLICY


def _write_final(out: Path, result: EvalResult, keep: guards.KeepBest | None = None) -> None:
    """`final.json`: the final evaluation (of the kept policy, with `keep_best`: which step it is from)."""
    data: dict[str, Any] = {
        "returns": result.returns.tolist(),
        "lengths": result.lengths.tolist(),
        "successes": [None if s != s else s for s in result.successes.tolist()],
        "mean_return": result.mean_return,
        "success_rate": result.success_rate,
    }
    if keep is not None:
        data.update(kept_step=keep.best_step, stopped_early=keep.stop)
    atomic_write_text(json.dumps(data, indent=1), out / FINAL)


def zero_shot(ctx: Context, policy: Path, seed: int, variant: str) -> None:
    """Evaluate a pretrained policy on the target without any target training.

    Evaluated exactly like the target-trained variants: the curve evaluation (`evaluation.episodes` on
    the curve's episode seeds) and the final one (`final_episodes` on the final seeds). Its weights never
    change, so the curve holds that one evaluation at every step of the fine-tuning grid - what
    evaluating it there would give - and equals fine-tuning's own step-0 evaluation of the same weights."""
    torch.set_num_threads(ctx.cfg.torch_threads)  # results depend on it: fixed per stage
    out = ctx.stage_dir(variant, seed)
    if (out / FINAL).exists():
        return
    ev, ledger = ctx.cfg.evaluation, TargetLedger(purpose="evaluation")
    loaded = load_for_env(policy, lambda: gym.make(ctx.target_id, ledger=ledger), ctx.device, seed)
    run = {"obs_rms": loaded.obs_rms, "encoder": loaded.encoder, "n_envs": ctx.eval_envs}
    at_start = evaluate(loaded.model, loaded.make_env, ev.episodes, ctx.eval_seed(seed), **run)
    logger = stage_logger(out, None)
    curve = []
    for step in eval_grid(ctx.train_budget, ev.every_steps):
        record_evaluation(logger, at_start)
        logger.dump(step)
        curve.append(curve_point(step, at_start))
    logger.close()
    atomic_write_text(json.dumps(curve, indent=1), out / CURVE)
    result = evaluate(loaded.model, loaded.make_env, ev.final_episodes, ctx.eval_seed(seed, True), **run)
    write_steps(out, ledger)
    _write_final(out, result)
    write_hparams(out, stage_hparams(ctx, variant, seed, 0), result)


def write_steps(stage_dir: Path, ledger: TargetLedger) -> None:
    """The stage's target interaction so far (`target_steps.json`; see `accounting`)."""
    atomic_write_text(json.dumps(ledger.as_dict(), indent=1), stage_dir / STEPS)
