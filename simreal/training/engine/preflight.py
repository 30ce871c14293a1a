"""Everything a run will build, built once before anything is written: envs, spaces, the model.

`preflight(cfg, device)` registers the task, constructs the randomized and nominal source envs and the
target env exactly as the stages will (observation wrappers, pixels), checks that the target's spaces
fit the source's, and builds the model once on the source env as a dry run, so a mistake in a target,
a parameter selector or an algorithm argument is one line before the run directory exists - not a
traceback after pretraining. No env is reset or stepped: a target that is a real robot is opened and
closed, and nothing is asked of it.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv

from simreal.config import ExperimentConfig
from simreal.schema import ConfigError
from simreal.simulation.spaces import space_mismatch
from simreal.training.engine.context import Context, evaluation_reserve
from simreal.training.engine.evaluation import evaluate
from simreal.training.engine.method import plan
from simreal.training.engine.perception import Encoder, attach
from simreal.training.engine.sb3.loading import build_model


@contextlib.contextmanager
def _built(ctx: Context, env_id: str, where: str) -> Iterator[gym.Env[Any, Any]]:
    """`env_id` as the stages build it, closed afterwards; any failure is a ConfigError naming `where`."""
    try:
        env = ctx.make_env(env_id)
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - a user's env can fail in any way while it is built
        raise ConfigError(f"{where}: building {env_id} failed ({type(err).__name__}: {err})") from None
    try:
        yield env
    finally:
        env.close()


def _check_target_spaces(ctx: Context, source: gym.Env[Any, Any], target: gym.Env[Any, Any]) -> None:
    """The target's own spaces must fit the source's (compared before the experiment's observation
    wrappers, so a mismatch is named in the env's own dimensions)."""
    mismatch = space_mismatch(_own(source), _own(target))
    if mismatch is not None:
        raise ConfigError(
            f"{ctx.cfg.task.source}: targets.{ctx.cfg.target}: {mismatch} (allowed: the same shapes, dtypes "
            "and action bounds - a policy trained on the source must run on the target)"
        )


def _own(env: gym.Env[Any, Any]) -> gym.Env[Any, Any]:
    """`env` without the observation wrappers an experiment adds (`simreal.simulation.observation`)."""
    from simreal.simulation.observation import ActionHistory
    from simreal.simulation.privileged import History, Privileged

    while isinstance(env, ActionHistory | Privileged | History):
        env = env.env
    return env


def _algo_error(ctx: Context, err: Exception) -> ConfigError:
    """The dry run failed: find the `algo.kwargs` entry that causes it (each alone), name it in one line."""
    algo = ctx.cfg.algo
    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    for key, value in algo.kwargs.items():
        alone = algo.model_copy(update={"kwargs": {key: value}})
        try:
            dry_run(ctx, alone)
        except Exception as single:  # noqa: BLE001 - SB3 raises anything from its constructor
            first = str(single).strip().splitlines()[0] if str(single).strip() else type(single).__name__
            return ConfigError(f"algo.kwargs.{key}: {value!r} rejected by {algo.name} ({first})")
    return ConfigError(
        f"algo: {algo.name} cannot be built with these settings ({type(err).__name__}: {message})"
    )


def dry_run(ctx: Context, algo: Any) -> tuple[BaseAlgorithm, Encoder]:
    """The model built once on the source env's spaces (the env itself is closed again)."""
    venv = DummyVecEnv([lambda: ctx.make_env(ctx.source_id(True))])
    try:
        wrapped, encoder = attach(ctx.cfg.perception, venv, ctx.device)
        return build_model(algo, wrapped, algo.pretrain_lr, ctx.device, ctx.cfg.seeds[0], encoder), encoder
    finally:
        venv.close()


def _check_success_return(ctx: Context, model: BaseAlgorithm, encoder: Encoder) -> int:
    """`evaluation.success_return` must be above what an untrained policy gets on the target (else every
    variant "succeeds" at step 0). Measured with the curve's episodes and seeds; returns the target steps."""
    ev = ctx.cfg.evaluation
    if ev.success_return is None or ctx.cfg.exclusive:  # never an untrained policy on a robot
        return 0
    result = evaluate(
        model, ctx.make_target, ev.episodes, ctx.eval_seed(ctx.cfg.seeds[0]), None, encoder, ctx.eval_envs
    )
    if result.mean_return >= ev.success_return:
        raise ConfigError(
            f"evaluation.success_return: {ev.success_return:g} is already reached by an untrained policy "
            f"(mean return {result.mean_return:.4g} over {ev.episodes} target episodes) (allowed: a return "
            "above what an untrained policy gets)"
        )
    return int(result.lengths.sum())


def preflight(cfg: ExperimentConfig, device: torch.device) -> int:
    """Build every env the run will build and the model once; a problem is a one-line ConfigError.

    Returns the target steps it took: none, unless `evaluation.success_return` had to be checked against
    an untrained policy on the target."""
    from pathlib import Path

    stages = plan(cfg)  # the methods' stage graph: a bad declaration is one line before anything is built
    ctx = Context(cfg, Path(cfg.output_dir) / cfg.experiment, device, progress_bar=False)
    task = ctx.task  # registers it: imports, env ids, every target's env resolvable
    source_where = f"{task.source}: randomization"
    with _built(ctx, ctx.source_id(True), source_where) as source:
        if cfg.pretrain.nominal_baseline:
            with _built(ctx, ctx.source_id(False), f"{task.source}: env"):
                pass
        with _built(ctx, ctx.target_id, f"{task.source}: targets.{cfg.target}") as target:
            _check_target_spaces(ctx, source, target)
        _check_grid(ctx, source)
    if cfg.sim_backend == "warp":
        _check_batched(ctx)
    try:
        model, encoder = dry_run(ctx, cfg.algo)
        if cfg.pretrain.algo_kwargs:
            with warnings.catch_warnings():  # SB3's rollout-size hints assume the dry run's one env
                warnings.simplefilter("ignore", UserWarning)
                dry_run(ctx, cfg.pretrain_algo)
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - SB3 raises anything from its constructor
        raise _algo_error(ctx, err) from None
    _check_budget(ctx)
    for method in stages.methods:
        method.preflight(ctx)
    return _check_success_return(ctx, model, encoder)


def _check_grid(ctx: Context, source: gym.Env[Any, Any]) -> None:
    """`perception.pool` must fit the tap's feature map at the frames' size (a larger grid would only
    repeat cells: adaptive pooling upsamples silently)."""
    p = ctx.cfg.perception
    if p is None or p.pool == 1:
        return
    from agents.extractors import BackboneExtractor
    from simreal.training.engine.features import image_space_of

    space = image_space_of(source.observation_space)
    height, width = BackboneExtractor(space, **p.extractor_kwargs()).feature_map_size()
    if p.pool > min(height, width):
        raise ConfigError(
            f"perception.pool: a {p.pool}x{p.pool} grid on the {height}x{width} feature map of {p.backbone} "
            f"at tap {p.tap or 'the last stage'} for these frames (allowed: pool <= {min(height, width)}, an "
            "earlier tap, or a larger perception.image_size)"
        )


def _check_batched(ctx: Context) -> None:
    """`sim_backend: warp`: the task's env has a batched version, its randomized parameters and effects a
    per-world form, and `algo.n_envs` worlds fit in memory (no Warp model is built)."""
    from simreal.simulation.batched import check_batched

    check_batched(ctx.task, ctx.cfg.algo.n_envs, ctx.device)


def _check_budget(ctx: Context) -> None:
    """With evaluation in the budget, the budget must hold some training and the evaluations' worst case."""
    cfg = ctx.cfg
    if ctx.train_budget >= 1:
        return
    if not cfg.evaluation.count_in_budget:
        rollout = cfg.target_rollout
        raise ConfigError(
            f"finetune.timesteps: {cfg.finetune.timesteps:,} is less than one {cfg.algo.name} rollout "
            f"({rollout:,} steps: algo.kwargs.n_steps x {cfg.target_n_envs} target envs) "
            f"(allowed: >= {rollout:,})"
        )
    limit = ctx.episode_limit
    needed = 1 + evaluation_reserve(cfg, 1, limit)
    raise ConfigError(
        f"finetune.timesteps: {cfg.finetune.timesteps:,} target steps cannot hold any training plus the "
        f"evaluations when evaluation.count_in_budget is true (their worst case is {needed - 1:,} steps: "
        f"episodes of up to {limit:,} steps) (allowed: >= {needed:,}, or fewer evaluation episodes)"
    )
