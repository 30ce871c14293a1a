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
from simreal.training import auto
from simreal.training.artifacts import describe_space, spaces_match
from simreal.training.context import Context, evaluation_reserve
from simreal.training.evaluation import evaluate
from simreal.training.loading import build_model
from simreal.training.perception import Encoder, attach


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


def _short(space: gym.Space[Any]) -> str:
    desc = describe_space(space)
    if desc["type"] == "Box":
        return f"Box(shape={tuple(desc['shape'])}, {desc['dtype']})"
    return str(space)


def _check_target_spaces(ctx: Context, source: gym.Env[Any, Any], target: gym.Env[Any, Any]) -> None:
    for kind in ("observation", "action"):
        have, want = getattr(source, f"{kind}_space"), getattr(target, f"{kind}_space")
        if not spaces_match(describe_space(have), want, bounds=kind == "action"):
            raise ConfigError(
                f"{ctx.cfg.task.source}: targets.{ctx.cfg.target}: the target's {kind} space {_short(want)} "
                f"does not match the source's {_short(have)} (allowed: the same shapes, dtypes and action "
                "bounds - a policy trained on the source must run on the target)"
            )


def _algo_error(ctx: Context, err: Exception) -> ConfigError:
    """The dry run failed: find the `algo.kwargs` entry that causes it (each alone), name it in one line."""
    algo = ctx.cfg.algo
    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    for key, value in algo.kwargs.items():
        alone = algo.model_copy(update={"kwargs": {key: value}})
        try:
            _dry_run(ctx, alone)
        except Exception as single:  # noqa: BLE001 - SB3 raises anything from its constructor
            first = str(single).strip().splitlines()[0] if str(single).strip() else type(single).__name__
            return ConfigError(f"algo.kwargs.{key}: {value!r} rejected by {algo.name} ({first})")
    return ConfigError(
        f"algo: {algo.name} cannot be built with these settings ({type(err).__name__}: {message})"
    )


def _dry_run(ctx: Context, algo: Any) -> tuple[BaseAlgorithm, Encoder]:
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
        model, encoder = _dry_run(ctx, cfg.algo)
        if cfg.pretrain.algo_kwargs:
            with warnings.catch_warnings():  # SB3's rollout-size hints assume the dry run's one env
                warnings.simplefilter("ignore", UserWarning)
                _dry_run(ctx, cfg.pretrain_algo)
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - SB3 raises anything from its constructor
        raise _algo_error(ctx, err) from None
    _check_budget(ctx)
    _check_search(ctx)
    _check_distill(ctx)
    return _check_success_return(ctx, model, encoder)


def _check_grid(ctx: Context, source: gym.Env[Any, Any]) -> None:
    """`perception.pool` must fit the tap's feature map at the frames' size (a larger grid would only
    repeat cells: adaptive pooling upsamples silently)."""
    p = ctx.cfg.perception
    if p is None or p.pool == 1:
        return
    from agents.extractors import BackboneExtractor
    from simreal.training.features import image_space_of

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


def _check_distill(ctx: Context) -> None:
    """With `distill:`, the randomized sim must report something privileged, and teacher and student
    must build (on the source's spaces; no env is stepped)."""
    if ctx.cfg.distill is None:
        return
    from simreal.training.distill import context_for, student_config, teacher_config

    try:
        tcfg = teacher_config(ctx.cfg)
        scfg = student_config(ctx.cfg)
    except ValueError as err:
        raise ConfigError(f"{ctx.cfg.task.source}: {err}") from None
    if ctx.cfg.pixels:  # the env the teacher labels in: the state beside the image (refused in one line)
        ctx.make_env(ctx.task.pixel_randomized_id, teacher_state=True).close()
    for who, cfg in (("distill.teacher", tcfg), ("distill.student", scfg)):
        try:
            _dry_run(context_for(ctx, cfg), cfg.algo)
        except Exception as err:  # noqa: BLE001 - SB3 raises anything from its constructor
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(f"{who}: the {cfg.algo.name} model cannot be built ({first})") from None


def _check_search(ctx: Context) -> None:
    """`finetune.auto` must give every candidate at least one rollout in every round."""
    search = ctx.cfg.finetune.auto
    if search is None:
        return
    algo = ctx.cfg.algo
    rollout = ctx.cfg.target_rollout
    exploration = int(search.budget_fraction * ctx.train_budget)
    rounds, steps = auto.schedule(len(search.settings()), exploration, rollout)
    if steps < rollout:
        need = sum(rounds) * rollout
        raise ConfigError(
            f"finetune.auto.budget_fraction: {search.budget_fraction:g} of {ctx.train_budget:,} target steps "
            f"({exploration:,}) cannot give {len(search.settings())} candidates one rollout "
            f"({rollout:,} steps) in each of their {sum(rounds)} candidate-rounds (allowed: an exploration "
            f"of >= {need:,} steps)"
        )
    starts = ctx.cfg.finetune_learning_starts
    if starts is not None and steps <= starts:
        raise ConfigError(
            f"finetune.auto.budget_fraction: {search.budget_fraction:g} of {ctx.train_budget:,} target steps "
            f"gives each of {len(search.settings())} candidates {steps:,} steps in its first round, not more "
            f"than the {starts:,} transitions {algo.name} collects before its first update "
            "(finetune.learning_starts): the search would compare untrained copies (allowed: a larger "
            "budget_fraction or a smaller finetune.learning_starts)"
        )


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
