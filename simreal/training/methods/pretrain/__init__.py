"""Pretraining in simulation: the randomized source policy (what is transferred) and a nominal baseline.

Stages `pretrain_randomized` and `pretrain_nominal` (with `pretrain.nominal_baseline`); each returns the
path of its policy artifact, which the target stages start from.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from simreal.config import ExperimentConfig
from simreal.simulation.adr import AdrState
from simreal.training.engine.artifacts import check_spaces, load_policy, load_torch_state, save_policy
from simreal.training.engine.context import Context
from simreal.training.engine.loop import obs_rms_of, train_stage
from simreal.training.engine.method import Method, Stage
from simreal.training.engine.perception import Encoder
from simreal.training.engine.sb3.loading import build_model
from simreal.training.engine.stage import POLICY, backbone_lr, batched_env, policy_env, policy_meta

log = logging.getLogger("simreal")


def pretrain(
    ctx: Context,
    seed: int,
    randomized: bool,
    variant: str | None = None,
    init: Path | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Train on the randomized (or nominal) source sim; returns the policy artifact path. `variant`
    names the stage directory (default `pretrain_randomized` / `pretrain_nominal`); `init`, a policy to
    start from (its weights and observation statistics; a fresh network otherwise); `meta`, what the
    artifact records beside the usual."""
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
    if init is not None:
        _start_from(model, venv, init, ctx.device)
    backbone_lr(ctx, model)
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
        **policy_meta(ctx, variant, seed, env_id, venv),
        "adr": None if adr is None else adr.as_dict(),
        "sim_backend": ctx.cfg.sim_backend,
        "pretrain_algo_kwargs": algo.kwargs,
        **({"initialized_from": str(init)} if init is not None else {}),
        **(meta or {}),
    }
    save_policy(model, obs_rms_of(venv), meta, out / POLICY, backbone=encoder.backbone_state())
    venv.close()
    return out / POLICY


def _start_from(model: BaseAlgorithm, venv: VecEnv, init: Path, device: torch.device) -> None:
    """`init`'s weights (not its optimizers) and observation statistics in `model` (spaces checked)."""
    art = load_policy(init, device)
    check_spaces(art.meta, venv.observation_space, venv.action_space)
    load_torch_state(model, art.states, art.tensors, include_optimizers=False)
    if isinstance(venv, VecNormalize) and art.obs_rms is not None:
        venv.obs_rms = copy.deepcopy(art.obs_rms)  # type: ignore[arg-type]


def pretrain_randomized(ctx: Context, seed: int) -> Path:
    return pretrain(ctx, seed, randomized=True)


def pretrain_nominal(ctx: Context, seed: int) -> Path:
    return pretrain(ctx, seed, randomized=False)


def _nominal_baseline(cfg: ExperimentConfig) -> bool:
    return cfg.pretrain.nominal_baseline


class Pretrain(Method):
    """Randomized pretraining (the policy every transfer starts from) and the nominal baseline."""

    name = "pretrain"

    def stages(self) -> Sequence[Stage]:
        return (
            Stage("pretrain_randomized", pretrain_randomized),
            Stage("pretrain_nominal", pretrain_nominal, enabled=_nominal_baseline),
        )
