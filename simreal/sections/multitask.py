"""Multi-task pretraining: `pretrain.tasks` (the tasks, each with a weight) and the `multitask:` block (how
the network knows and serves each task). See `simreal.training.methods.multitask`.

    pretrain:
      timesteps: 60000
      tasks: [reacher_short.yaml, {task: reacher_long.yaml, weight: 2}]
    multitask:
      conditioning: onehot   # the task's one-hot id in the observation, or none
      heads: shared          # one action head, or per_task
      reward_scale: per_task # each task's reward over its own return's running std, or none
      held_out_as: null      # the pretraining task whose id and head the experiment's task uses (null:
                             # the nearest, as the policy does on the experiment task's own sim)
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from simreal.schema import Spec
from simreal.simulation.tasks import TaskSpec, load_task

ALGOS = ("PPO", "A2C")
"""What the multi-task policy (`agents.multitask`, Gaussian actions with masked components) trains."""


class TaskEntry(Spec):
    """One pretraining task and its share of the episodes."""

    task: TaskSpec
    """A packaged key, a task YAML (relative to the experiment file) or a mapping."""
    weight: float = Field(default=1.0, gt=0)
    """Its share of the episodes (drawn at every reset in proportion to the weights)."""

    @field_validator("task", mode="before")
    @classmethod
    def _resolve(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, TaskSpec):
            return value
        context = info.context or {}
        return load_task(value, context.get("base_dir"), where="pretrain.tasks", context=context)


def entries(value: Any) -> Any:
    """`pretrain.tasks` items given as a bare task are `{task: ...}`."""
    if isinstance(value, list):
        return [v if isinstance(v, dict) and "task" in v else {"task": v} for v in value]
    return value


class MultitaskConfig(Spec):
    """How one network serves the tasks of `pretrain.tasks`."""

    conditioning: Literal["onehot", "none"] = "onehot"
    """`onehot`: the task's id appended to the observation; `none`: the network must tell from the state."""
    heads: Literal["shared", "per_task"] = "shared"
    """One action head for every task, or one per task (each trained on its own task's samples only)."""
    reward_scale: Literal["per_task", "none"] = "per_task"
    """`per_task`: each task's reward divided by the running std of its own discounted return, so a task
    with large rewards does not drown the others."""
    held_out_as: str | None = None
    """The pretraining task (its name) whose id and head the experiment's task is given. None: the nearest,
    chosen per seed at the end of pretraining - the id under which the policy returns most on the
    experiment task's own randomized sim (10 episodes each; sim steps only), among the tasks with its
    action dimension."""


def check_multitask(exp: Any) -> None:
    """What multi-task pretraining needs of the experiment (spaces are checked by preflight)."""
    tasks = exp.pretrain.tasks
    mt = exp.multitask or MultitaskConfig()
    if not tasks:
        if exp.multitask is not None:
            raise ValueError("multitask: set pretrain.tasks (the tasks to pretrain on together)")
        return
    names = [t.task.name for t in tasks]
    if len(set(names)) != len(names):
        raise ValueError(f"pretrain.tasks: a task named twice ({', '.join(names)})")
    if exp.task.name in names:
        raise ValueError(
            f"pretrain.tasks: {exp.task.name} is the experiment's task, which is held out (allowed: other "
            "tasks; the experiment's task is what the multi-task policy transfers to)"
        )
    if mt.conditioning == "onehot" and len(tasks) < 2:
        raise ValueError(
            "multitask.conditioning: onehot with one task says nothing (allowed: none, or more tasks)"
        )
    if mt.heads == "per_task" and mt.conditioning == "none":
        raise ValueError("multitask.heads: per_task needs the task's id (allowed: conditioning: onehot)")
    if exp.algo.name not in ALGOS:
        raise ValueError(
            f"pretrain.tasks: not for algo.name {exp.algo.name} yet (allowed: {', '.join(ALGOS)})"
        )
    if mt.held_out_as is not None and mt.held_out_as not in names:
        raise ValueError(
            f"multitask.held_out_as: {mt.held_out_as!r} is not in pretrain.tasks ({', '.join(names)})"
        )
    if exp.pixels or exp.sim_backend != "gymnasium" or exp.algo.policy != "MlpPolicy":
        raise ValueError(
            "pretrain.tasks: state policies on Gymnasium envs (allowed: pixels: false, MlpPolicy)"
        )
