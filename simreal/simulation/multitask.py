"""Several tasks as one env: a common observation and action space, the task's id, balanced sampling.

`TaskLayout` is the common space of a set of tasks: observations zero-padded to the largest dimension,
then (with one-hot conditioning) the task's one-hot id; actions padded to the largest dimension. `Padded`
puts one task's env in that layout: its observation padded and the id appended; actions in [-1, 1] (each
task's own bounds mapped onto them), and of a padded action only the task's own components reach the env
- the rest are dropped, so they can never change what the env does (the policy's loss masks them too:
`agents.multitask`). `TaskSwitching` draws a task at every
reset (by the tasks' weights, seeded) and steps that task's env; with `reward_scale`, each task's reward
is divided by the running standard deviation of its own discounted return, so a task with large rewards
does not drown the others. Every finished episode reports its task and its raw return in
`info["multitask"]`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from pydantic import Field

from simreal.schema import Spec

Array = np.ndarray


class TaskLayout(Spec):
    """The common space of a multi-task policy, and which task an env is."""

    obs_dim: int = Field(ge=1)
    """Observation components before the id (every task's padded to this)."""
    act_dim: int = Field(ge=1)
    """Action components (every task's padded to this; the extra ones are dropped)."""
    tasks: int = Field(default=0, ge=0)
    """Length of the one-hot id appended to the observation (0: no id)."""
    index: int | None = None
    """This env's task among them (its one-hot position); None: no id set (all zeros)."""
    own_act_dim: int | None = None
    """This env's own action components (None: all `act_dim`)."""


def _box(space: gym.Space[Any], what: str) -> gym.spaces.Box:
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise ValueError(f"{what}: a flat Box is needed to pad tasks to one space, got {space}")
    return space


class Padded(gym.Wrapper[Array, Array, Array, Array]):
    """One task's env in a `TaskLayout`: observation padded and its id appended; actions padded."""

    def __init__(self, env: gym.Env[Any, Any], layout: TaskLayout) -> None:
        super().__init__(env)
        obs, act = _box(env.observation_space, "observation"), _box(env.action_space, "action")
        if obs.shape[0] > layout.obs_dim or act.shape[0] > layout.act_dim:
            raise ValueError(
                f"an env with {obs.shape[0]} observation and {act.shape[0]} action components does not fit "
                f"the multi-task layout ({layout.obs_dim}, {layout.act_dim})"
            )
        self.layout, self._own = layout, act.shape[0]
        self._low, self._high = act.low.astype(np.float64), act.high.astype(np.float64)
        self._bounded = np.isfinite(self._low) & np.isfinite(self._high)
        width = layout.obs_dim + layout.tasks
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(width,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(layout.act_dim,), dtype=np.float32)
        pad_obs = layout.obs_dim - obs.shape[0]
        self._tail = np.zeros(pad_obs + layout.tasks, dtype=np.float32)
        if layout.tasks and layout.index is not None:
            self._tail[pad_obs + layout.index] = 1.0

    def _obs(self, obs: Array) -> Array:
        return np.concatenate([np.asarray(obs, dtype=np.float32).ravel(), self._tail])

    def reset(self, **kwargs: Any) -> tuple[Array, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        return self._obs(obs), info

    def step(self, action: Array) -> tuple[Array, SupportsFloat, bool, bool, dict[str, Any]]:
        own = np.asarray(action, dtype=np.float64)[: self._own]  # the padded components never reach the env
        scaled = np.where(
            self._bounded, self._low + (np.clip(own, -1, 1) + 1) / 2 * (self._high - self._low), own
        )
        obs, reward, terminated, truncated, info = self.env.step(scaled.astype(self.env.action_space.dtype))
        return self._obs(obs), reward, terminated, truncated, info


def layout_of(spaces: Sequence[tuple[gym.Space[Any], gym.Space[Any]]], onehot: bool) -> TaskLayout:
    """The common layout of tasks with these (observation, action) spaces."""
    obs = [_box(o, f"task {i}'s observation").shape[0] for i, (o, _) in enumerate(spaces)]
    act = [_box(a, f"task {i}'s action").shape[0] for i, (_, a) in enumerate(spaces)]
    return TaskLayout(obs_dim=max(obs), act_dim=max(act), tasks=len(spaces) if onehot else 0)


class TaskSwitching(gym.Env[Array, Array]):
    """A new task at every reset, drawn by `weights`; each task's env built once, in its layout."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        makers: Sequence[Callable[[], gym.Env[Any, Any]]],
        names: Sequence[str],
        layout: TaskLayout,
        weights: Sequence[float],
        seed: int,
        reward_scale: bool = True,
        gamma: float = 0.99,
    ) -> None:
        self.names = list(names)
        self.envs = [
            Padded(make(), layout.model_copy(update={"index": i if layout.tasks else None}))
            for i, make in enumerate(makers)
        ]
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space
        self._p = np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
        self._rng = np.random.default_rng([seed, 29, 1])
        self._scale, self._gamma = reward_scale, gamma
        self._var = [_Running() for _ in self.envs]  # of each task's discounted return
        self.current, self._ret, self._disc = 0, 0.0, 0.0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Array, dict]:
        super().reset(seed=seed)
        if seed is not None:
            self._rng = np.random.default_rng([seed, 29, 1])
        self.current = int(self._rng.choice(len(self.envs), p=self._p))
        self._ret, self._disc = 0.0, 0.0
        obs, info = self.envs[self.current].reset(seed=int(self._rng.integers(2**31)))
        return obs, {**info, "task": self.names[self.current]}

    def step(self, action: Array) -> tuple[Array, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.envs[self.current].step(action)
        raw = float(reward)
        self._ret += raw
        if self._scale:
            self._disc = self._gamma * self._disc + raw
            running = self._var[self.current]
            running.add(self._disc)
            raw = raw / float(np.sqrt(running.var + 1e-8)) if running.n > 1 else raw
        if terminated or truncated:
            info = {**info, "multitask": {"task": self.names[self.current], "return": self._ret}}
        return obs, raw, terminated, truncated, info

    def close(self) -> None:
        for env in self.envs:
            env.close()


class _Running:
    """Welford's running mean and variance."""

    def __init__(self) -> None:
        self.n, self.mean, self._m2 = 0, 0.0, 0.0

    def add(self, x: float) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self._m2 += delta * (x - self.mean)

    @property
    def var(self) -> float:
        return self._m2 / (self.n - 1) if self.n > 1 else 1.0
