"""Pretraining in simulation: the randomized source policy (what is transferred) and a nominal baseline.

Stages `pretrain_randomized` and `pretrain_nominal` (with `pretrain.nominal_baseline`); each returns the
path of its policy artifact, which the target stages start from.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from simreal.config import ExperimentConfig
from simreal.simulation.adr import AdrState
from simreal.training.engine.artifacts import save_policy
from simreal.training.engine.context import Context
from simreal.training.engine.loop import obs_rms_of, train_stage
from simreal.training.engine.method import Method, Stage
from simreal.training.engine.perception import Encoder
from simreal.training.engine.sb3.loading import build_model
from simreal.training.engine.stage import POLICY, backbone_lr, batched_env, policy_env, policy_meta

log = logging.getLogger("simreal")


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
    }
    save_policy(model, obs_rms_of(venv), meta, out / POLICY, backbone=encoder.backbone_state())
    venv.close()
    return out / POLICY


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
