"""The task registry: every task - packaged or the user's own - registered the same way, ids included.

`register_task` takes a packaged key, a task YAML path, a mapping or a `TaskSpec`, imports what the
task names, resolves its env, and registers its Gymnasium ids:

- nominal sim:    `simreal/<Name>-v0`              the task's env as configured (its time limit)
- randomized sim: `simreal/<Name>-Rand-v0`         physics and sensing varied per episode (for pretraining)
- targets:        `simreal/<Name>-Target-<T>-v0`   fixed shifted physics plus real-like effects, on the
                                                  task's env or the target's own `env:`
- with `pixels:`  `simreal/<Name>-Pixels-v0`, `-Pixels-Rand-v0`, `-Pixels-Target-<T>-v0`

The packaged tasks (`configs/tasks/*.yaml`) are registered when `simreal` is imported, through this same
function; nothing else lists them. Registration is per process: a spawned worker or a Ray task calls
`ensure(spec)` with the task its config carries, which re-imports the task's `imports` and registers it
again (a no-op where it already is). Registering a different task under a taken name is an error.

Example:
    >>> task = register_task("tasks/my_arm.yaml")
    >>> gym.make(task.target_id("real"))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec

from simreal.schema import ConfigError
from simreal.simulation.references import import_all, resolve_env
from simreal.simulation.tasks import TaskSpec, load_task, packaged_tasks

VARIANTS = "simreal.simulation.variants"


def camel_target(name: str) -> str:
    """Target key -> id part: `latency` -> `Latency`, `real_arm` -> `RealArm`."""
    return name.title().replace("_", "")


@dataclass(frozen=True)
class Task:
    """A registered task: its spec, its resolved env and its ids."""

    spec: TaskSpec
    env: EnvSpec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def source(self) -> str:
        return self.spec.source

    @property
    def nominal_id(self) -> str:
        return f"simreal/{self.name}-v0"

    @property
    def randomized_id(self) -> str:
        return f"simreal/{self.name}-Rand-v0"

    def target_id(self, target: str) -> str:
        return f"simreal/{self.name}-Target-{camel_target(target)}-v0"

    @property
    def pixel_nominal_id(self) -> str:
        return f"simreal/{self.name}-Pixels-v0"

    @property
    def pixel_randomized_id(self) -> str:
        return f"simreal/{self.name}-Pixels-Rand-v0"

    def pixel_target_id(self, target: str) -> str:
        return f"simreal/{self.name}-Pixels-Target-{camel_target(target)}-v0"

    def ids(self) -> list[str]:
        """Every id this task registers."""
        ids = [self.nominal_id, self.randomized_id, *(self.target_id(t) for t in self.spec.targets)]
        if self.spec.pixels is not None:
            ids += [self.pixel_nominal_id, self.pixel_randomized_id]
            ids += [self.pixel_target_id(t) for t in self.spec.targets]
        return ids

    def target_env(self, target: str) -> EnvSpec:
        """The env a target runs on: the target's own `env:`, else the task's."""
        spec = self.spec.target(target)
        if spec.env is None:
            return replace(self.env, id=f"{self.name}-Target-{camel_target(target)}-Base-v0")
        return resolve_env(
            spec.env,
            spec.env_kwargs,
            spec.max_episode_steps if spec.max_episode_steps is not None else self.env.max_episode_steps,
            f"{self.name}-Target-{camel_target(target)}-Base-v0",
            f"{self.source}: targets.{target}.env",
        )


TASKS: dict[str, Task] = {}
"""Name -> task, for every task registered in this process."""


def _same(a: TaskSpec, b: TaskSpec) -> bool:
    return a.model_dump(mode="json") == b.model_dump(mode="json")


def _register_ids(task: Task) -> None:
    env = task.env
    gym.register(
        id=task.nominal_id,
        entry_point=env.entry_point,
        reward_threshold=env.reward_threshold,
        nondeterministic=env.nondeterministic,
        max_episode_steps=env.max_episode_steps,
        order_enforce=env.order_enforce,
        disable_env_checker=env.disable_env_checker,
        additional_wrappers=env.additional_wrappers,
        kwargs=dict(env.kwargs or {}),
    )
    name = task.name
    source, target_of = f"{VARIANTS}:make_source", f"{VARIANTS}:make_target"
    gym.register(task.randomized_id, entry_point=source, kwargs={"task": name})
    for target in task.spec.targets:
        gym.register(task.target_id(target), entry_point=target_of, kwargs={"task": name, "target": target})
    if task.spec.pixels is not None:
        camera = {"task": name, "pixels": True}
        gym.register(task.pixel_nominal_id, entry_point=source, kwargs={**camera, "randomized": False})
        gym.register(task.pixel_randomized_id, entry_point=source, kwargs=camera)
        for target in task.spec.targets:
            kwargs = {**camera, "target": target}
            gym.register(task.pixel_target_id(target), entry_point=target_of, kwargs=kwargs)


def ensure(spec: TaskSpec) -> Task:
    """The registered task for `spec`, registering it (imports, env, ids) if this process has not yet."""
    known = TASKS.get(spec.name)
    if known is not None:
        if not _same(known.spec, spec):
            raise ConfigError(
                f"{spec.source}: name {spec.name!r} is taken by another task ({known.source}) "
                "(allowed: give this task its own name:)"
            )
        return known
    import_all(list(spec.imports), f"{spec.source}: imports")
    env = resolve_env(
        spec.env, spec.env_kwargs, spec.max_episode_steps, f"simreal/{spec.name}-v0", f"{spec.source}: env"
    )
    task = Task(spec, env)
    for target in spec.targets:
        task.target_env(target)  # resolvable now, not at the first episode
    taken = [i for i in task.ids() if i in gym.registry]
    if taken:
        raise ConfigError(
            f"{spec.source}: id {taken[0]} is already registered by something else (allowed: another name:)"
        )
    _register_ids(task)
    TASKS[spec.name] = task
    return task


def register_task(task: str | Path | Mapping[str, Any] | TaskSpec, base_dir: Path | None = None) -> Task:
    """Register a task from a packaged key, a task YAML path, a mapping or a spec; returns it with its ids.

    Example: `simreal.register_task("tasks/my_arm.yaml").target_id("real")`."""
    return ensure(load_task(task, base_dir))


def get_task(name: str) -> Task:
    """A task registered in this process (the env builders behind the registered ids look tasks up here)."""
    if name not in TASKS:
        raise ConfigError(
            f"task {name!r} is not registered in this process (allowed: {', '.join(TASKS)}; "
            "register_task(...) it first)"
        )
    return TASKS[name]


PACKAGED: dict[str, Task] = {}
"""Packaged key (`configs/tasks/<key>.yaml`) -> its registered task."""


def register_packaged() -> None:
    """Register every packaged task (`configs/tasks/*.yaml`), through the same path as a user's."""
    for key in packaged_tasks():
        PACKAGED[key] = register_task(key)
