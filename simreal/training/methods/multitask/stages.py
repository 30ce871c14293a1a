"""`pretrain_multitask`: one policy on the tasks of `pretrain.tasks` at once, then transferred to the
experiment's own (held-out) task.

The tasks' randomized sims share one space (`simreal.simulation.multitask.TaskLayout`: observations
padded, with the one-hot id under `conditioning: onehot`; actions in [-1, 1], padded) and one env that
draws a task at every reset by the weights (`TaskSwitching`, each task's reward scaled by its own
return's running std under `reward_scale: per_task`). The policy is `agents.multitask.MultiTaskPolicy`:
a shared trunk, shared or per-task heads, the padded action components masked out of the loss. Per-task
returns go to TensorBoard (`multitask/<task>/return`) as it trains, and at the end each task is evaluated
on its own randomized sim (`multitask.json`). The artifact's observation layout gives the experiment's
task the id (and head) of `multitask.held_out_as`, so `zeroshot_multitask` and `finetune_multitask` run
it on the target like any policy.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

from simreal.config import ExperimentConfig
from simreal.sections import MultitaskConfig
from simreal.simulation.multitask import Padded, TaskLayout, TaskSwitching, layout_of
from simreal.simulation.observation import observation_wrapper
from simreal.simulation.registry import Task, ensure
from simreal.training.engine.artifacts import atomic_write_text, save_policy
from simreal.training.engine.context import Context
from simreal.training.engine.evaluation import evaluate
from simreal.training.engine.loop import normalized, obs_rms_of, train_stage
from simreal.training.engine.sb3.loading import build_model
from simreal.training.engine.stage import POLICY, policy_meta

log = logging.getLogger("simreal")

STAGE = "pretrain_multitask"
SUMMARY = "multitask.json"
POLICY_CLASS = "agents.multitask:MultiTaskPolicy"
EVAL_EPISODES = 5
NEAREST_EPISODES = 10


def settings(cfg: ExperimentConfig) -> MultitaskConfig:
    return cfg.multitask or MultitaskConfig()


def tasks(cfg: ExperimentConfig) -> list[Task]:
    """The pretraining tasks, registered in this process."""
    return [ensure(entry.task) for entry in cfg.pretrain.tasks]


def spaces_of(env_id: str) -> tuple[gym.Space[Any], gym.Space[Any]]:
    env = gym.make(env_id)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def layout(ctx: Context) -> tuple[TaskLayout, list[int]]:
    """The common layout of the pretraining tasks (the held-out task must fit it) and each task's action
    dimension."""
    spaces = [spaces_of(t.randomized_id) for t in tasks(ctx.cfg)]
    common = layout_of(spaces, settings(ctx.cfg).conditioning == "onehot")
    return common, [int(a.shape[0]) for _, a in spaces]  # type: ignore[index]


def candidates(ctx: Context, dims: list[int]) -> list[int]:
    """The pretraining tasks whose id the held-out task may borrow: those with its action dimension (a
    task with fewer would mask some of its motors out of the loss), else the larger ones, else all."""
    own = int(spaces_of(ctx.task.nominal_id)[1].shape[0])  # type: ignore[index]
    same = [i for i, d in enumerate(dims) if d == own]
    return same or [i for i, d in enumerate(dims) if d > own] or list(range(len(dims)))


def held_out_index(ctx: Context, dims: list[int], seed: int | None = None) -> int:
    """The pretraining task whose id and head the experiment's task is given: `multitask.held_out_as`,
    else the one `pretrain_multitask` found nearest for this seed (see `nearest`), else - before that
    stage has run - the first candidate."""
    names = [entry.task.name for entry in ctx.cfg.pretrain.tasks]
    chosen = settings(ctx.cfg).held_out_as
    summary = ctx.stage_dir(STAGE, seed) / SUMMARY if seed is not None else None
    if chosen is None and summary is not None and summary.is_file():
        chosen = json.loads(summary.read_text())["held_out_as"]
    if chosen is not None:
        return names.index(chosen)
    return candidates(ctx, dims)[0]


def multitask_context(ctx: Context, seed: int | None = None, index: int | None = None) -> Context:
    """The experiment as the multi-task policy sees it: its layout (the held-out task's id: `index`, else
    `held_out_index` for `seed`), its policy class and its masks."""
    common, dims = layout(ctx)
    index = held_out_index(ctx, dims, seed) if index is None else index
    masks = [[1.0] * d + [0.0] * (common.act_dim - d) for d in dims]
    extra = {
        **ctx.cfg.algo.policy_extra,
        "action_masks": masks,
        "task_slice": [common.obs_dim, common.obs_dim + common.tasks] if common.tasks else None,
        "heads": settings(ctx.cfg).heads,
    }
    algo = ctx.cfg.algo.model_copy(update={"policy": POLICY_CLASS, "policy_extra": extra})
    held = common.model_copy(update={"index": index if common.tasks else None})
    observation = ctx.cfg.observation.model_copy(update={"layout": held})
    return dataclasses.replace(ctx, cfg=ctx.cfg.model_copy(update={"algo": algo, "observation": observation}))


class PerTaskReturns(BaseCallback):
    """The episodes' raw returns per task, logged as `multitask/<task>/return` at every rollout's end."""

    def __init__(self) -> None:
        super().__init__()
        self.returns: dict[str, list[float]] = {}
        self.recent: dict[str, list[float]] = {}

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            if "multitask" in info:
                done = info["multitask"]
                self.returns.setdefault(done["task"], []).append(float(done["return"]))
                self.recent.setdefault(done["task"], []).append(float(done["return"]))
        return True

    def _on_rollout_end(self) -> None:
        for task, values in self.recent.items():
            if values:
                self.logger.record(f"multitask/{task}/return", float(np.mean(values)))
        self.recent = {}


def padded_maker(env_id: str, own: TaskLayout, on_top: Any) -> Callable[[], gym.Env[Any, Any]]:
    """Envs of `env_id` in the layout `own` (its task id set), the observation wrappers on top."""

    def make() -> gym.Env[Any, Any]:
        env: gym.Env[Any, Any] = Padded(gym.make(env_id), own)
        return on_top(env) if on_top else env

    return make


def nearest(
    ctx: Context, model: Any, common: TaskLayout, seed: int, rms: Any, on_top: Any
) -> dict[str, float]:
    """The held-out task's return on its own randomized sim under each candidate id (the same
    `NEAREST_EPISODES` episode seeds each; sim steps, never the target's): the id with the highest is
    the pretraining task nearest to it, as the policy sees it."""
    names = [entry.task.name for entry in ctx.cfg.pretrain.tasks]
    out = {}
    for i in candidates(ctx, layout(ctx)[1]):
        make = padded_maker(ctx.task.randomized_id, common.model_copy(update={"index": i}), on_top)
        out[names[i]] = evaluate(model, make, NEAREST_EPISODES, ctx.eval_seed(seed, True), rms).mean_return
    return out


def pretrain_multitask(ctx: Context, seed: int) -> Path:
    """Train the multi-task policy; returns its artifact (see the module docstring)."""
    torch.set_num_threads(ctx.cfg.torch_threads)
    out = ctx.stage_dir(STAGE, seed)
    if (out / POLICY).exists():
        return out / POLICY
    mctx = multitask_context(ctx)
    cfg, mt = mctx.cfg, settings(ctx.cfg)
    common = cfg.observation.layout
    assert common is not None
    registered = tasks(cfg)
    names = [t.name for t in registered]
    weights = [entry.weight for entry in cfg.pretrain.tasks]
    gamma = float(cfg.algo.kwargs.get("gamma", 0.99))
    on_top = observation_wrapper(cfg.observation.model_copy(update={"layout": None}))

    def make(**_: Any) -> gym.Env[Any, Any]:
        makers = [lambda t=t: gym.make(t.randomized_id) for t in registered]
        layout = common.model_copy(update={"index": None})
        return TaskSwitching(makers, names, layout, weights, seed, mt.reward_scale == "per_task", gamma)

    algo = cfg.pretrain_algo
    venv = make_vec_env(make, n_envs=algo.n_envs, seed=seed, wrapper_class=on_top)
    venv = normalized(venv, algo.normalize_obs, None, True)
    model = build_model(algo, venv, algo.pretrain_lr, ctx.device, seed)
    per_task = PerTaskReturns()
    log.info(
        "%s seed %d on %s for %d steps -> %s", STAGE, seed, ", ".join(names), cfg.pretrain.timesteps, out
    )
    train_stage(
        model,
        cfg.pretrain.timesteps,
        out,
        None,
        cfg.checkpoint_every_steps,
        ctx.progress_bar,
        callbacks=[per_task],
    )
    rms = obs_rms_of(venv)
    evaluations = {}
    for i, task in enumerate(registered):
        own = common.model_copy(update={"index": i if common.tasks else None})
        make_eval = padded_maker(task.randomized_id, own, on_top)
        result = evaluate(model, make_eval, EVAL_EPISODES, ctx.eval_seed(seed, True), rms)
        evaluations[task.name] = {"mean_return": result.mean_return, "std_return": result.std_return}
    by_id = nearest(ctx, model, common, seed, rms, on_top) if mt.held_out_as is None and common.tasks else {}
    index = names.index(max(by_id, key=lambda n: by_id[n])) if by_id else common.index
    mctx = multitask_context(ctx, index=index)
    held = mctx.cfg.observation.layout
    assert held is not None
    meta = {
        **policy_meta(mctx, STAGE, seed, "multitask:" + ",".join(names), venv),
        "task": "+".join(names),
        "pretrained_for": ctx.cfg.task.name,
        "multitask": {"tasks": names, "weights": weights, "held_out_as": names[held.index or 0]},
    }
    save_policy(model, rms, meta, out / POLICY)
    venv.close()
    summary = {
        "tasks": names,
        "weights": weights,
        "sim_steps": cfg.pretrain.timesteps,
        "episodes": {k: len(v) for k, v in per_task.returns.items()},
        "last_returns": {k: float(np.mean(v[-20:])) for k, v in per_task.returns.items() if v},
        "evaluation": evaluations,
        "layout": held.model_dump(),
        "held_out_as": names[held.index or 0],
        "held_out_returns": by_id,
        "conditioning": mt.conditioning,
        "heads": mt.heads,
    }
    atomic_write_text(json.dumps(summary, indent=1), out / SUMMARY)
    return out / POLICY
