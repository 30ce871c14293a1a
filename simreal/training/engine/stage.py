"""What every stage shares: the vec env a policy trains on, its artifact's metadata, the files it writes.

Each stage is skipped when its outputs exist, which is what makes `--resume` work. The run directory's
layout::

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

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from simreal.simulation.accounting import STEPS, TargetLedger
from simreal.simulation.adr import AdrState
from simreal.simulation.privileged import history_layout
from simreal.training.engine.artifacts import (
    atomic_write_text,
    describe_space,
)
from simreal.training.engine.context import Context
from simreal.training.engine.evaluation import EvalResult
from simreal.training.engine.features import VecFrozenFeatures
from simreal.training.engine.loop import (
    make_vec,
    normalized,
)
from simreal.training.engine.perception import Encoder, attach, env_space
from simreal.training.engine.sb3 import guards
from simreal.training.engine.sb3 import transfer as tr

log = logging.getLogger("simreal")

POLICY = "policy.pt"
FINAL = "final.json"


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
            lr_schedule=cfg.finetune_lr_schedule,
            freeze_features=ft.freeze_features,
            freeze_layers=ft.freeze_layers,
            reinit_heads=ft.reinit_heads,
            obs_norm=ft.obs_norm,
        )
    return hparams


def backbone_lr(ctx: Context, model: BaseAlgorithm) -> None:
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


def policy_meta(ctx: Context, variant: str, seed: int, env_id: str, venv: VecEnv) -> dict[str, Any]:
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


def write_final(
    out: Path, result: EvalResult, keep: guards.KeepBest | None = None, extra: dict[str, Any] | None = None
) -> None:
    """`final.json`: the final evaluation (of the kept policy, with `keep_best`: which step it is from),
    and `extra` (what the stage's stateful callbacks ended with, e.g. the adaptive rate)."""
    data: dict[str, Any] = {
        "returns": result.returns.tolist(),
        "lengths": result.lengths.tolist(),
        "successes": [None if s != s else s for s in result.successes.tolist()],
        "mean_return": result.mean_return,
        "success_rate": result.success_rate,
    }
    if keep is not None:
        data.update(kept_step=keep.best_step, stopped_early=keep.stop)
    data.update(extra or {})
    atomic_write_text(json.dumps(data, indent=1), out / FINAL)


def write_steps(stage_dir: Path, ledger: TargetLedger) -> None:
    """The stage's target interaction so far (`target_steps.json`; see `accounting`)."""
    atomic_write_text(json.dumps(ledger.as_dict(), indent=1), stage_dir / STEPS)
