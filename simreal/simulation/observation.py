"""What the policy observes beyond the env's own observation, declared once per experiment.

`ActionHistory` appends the last k actions to the observation. With actuation latency the state alone
no longer determines what happens next - the commands still in flight do - so a memoryless policy
needs them to cope with delays (a standard ingredient of latency-robust sim-to-real policies).
Applied identically to source, target and evaluation envs, so spaces always match.

Camera observations keep their image apart: an image observation becomes the Dict `{"image": frames,
"action_history": actions}`, and a Dict observation (`{"image", "state"}`) gains the `"action_history"`
entry, so frames still reach the backbone as frames.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from pydantic import Field, model_validator

from simreal.schema import Spec
from simreal.simulation.multitask import Padded, TaskLayout
from simreal.simulation.pixels import IMAGE_KEY

HISTORY_KEY = "action_history"


class ObservationConfig(Spec):
    """Observation augmentations applied to every env of an experiment."""

    action_history: int = Field(default=0, ge=0, le=64)
    """The last k actions appended to the observation (0: none)."""
    privileged: bool = False
    """A privileged teacher's view: the sampled physics and effects appended (`privileged.Privileged`)."""
    history_window: int = Field(default=0, ge=0, le=256)
    """A student's view: the last k (observation, action) pairs appended (`privileged.History`)."""
    layout: TaskLayout | None = None
    """A multi-task policy's common space, applied first (`simreal.simulation.multitask.Padded`): set by
    the multi-task stages, not written by hand."""

    def check(self, exp: Any) -> None:
        """A camera policy's observation is a Dict of frames: only the action history can join it."""
        if exp.pixels and (self.privileged or self.history_window):
            raise ValueError(
                "observation.privileged/history_window: not with image observations (allowed: action_history)"
            )

    @model_validator(mode="after")
    def _one_view(self) -> ObservationConfig:
        if self.privileged and self.history_window:
            raise ValueError("privileged and history_window: a policy is a teacher or a student, not both")
        return self


def history_spaces(obs_space: Any, act_space: Any, steps: int) -> tuple[gym.spaces.Box, np.ndarray]:
    """The observation space with `steps` actions appended, and the history before the first action
    (the neutral command: 0 clipped into the bounds, `steps` times) - for one env and for batched worlds."""
    if not isinstance(obs_space, gym.spaces.Box) or not isinstance(act_space, gym.spaces.Box):
        raise ValueError(f"observation.action_history needs Box spaces, got {obs_space} and {act_space}")
    if steps < 1:
        raise ValueError(f"observation.action_history: steps must be >= 1, got {steps}")
    low = np.concatenate([obs_space.low.ravel(), np.tile(act_space.low.ravel(), steps)])
    high = np.concatenate([obs_space.high.ravel(), np.tile(act_space.high.ravel(), steps)])
    neutral = np.clip(np.zeros(act_space.low.size), act_space.low.ravel(), act_space.high.ravel())
    space = gym.spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
    return space, np.tile(neutral, steps).astype(np.float32)


def _is_image(space: Any) -> bool:
    return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3


class ActionHistory(gym.Wrapper[Any, np.ndarray, Any, np.ndarray]):
    """Observation = [obs, a_{t-k}, ..., a_{t-1}] (flattened, float32); zeros before the first action.

    For an image observation, `{"image": obs, "action_history": [a_{t-k}, ..., a_{t-1}]}`; for a Dict
    observation, the same entry added to it (see the module's docstring)."""

    def __init__(self, env: gym.Env[Any, np.ndarray], steps: int) -> None:
        super().__init__(env)
        space = env.observation_space
        self._keyed = isinstance(space, gym.spaces.Dict) or _is_image(space)
        if self._keyed:
            empty = gym.spaces.Box(np.zeros(0, np.float32), np.zeros(0, np.float32), dtype=np.float32)
            history, self._neutral = history_spaces(empty, env.action_space, steps)
            entries = dict(space.spaces) if isinstance(space, gym.spaces.Dict) else {IMAGE_KEY: space}
            if HISTORY_KEY in entries:
                raise ValueError(f"observation.action_history: the env's Dict already has {HISTORY_KEY!r}")
            self.observation_space = gym.spaces.Dict({**entries, HISTORY_KEY: history})
        else:
            self.observation_space, self._neutral = history_spaces(space, env.action_space, steps)
        self._act_dim = int(np.prod(env.action_space.shape or ()))
        self._history = self._neutral.copy()

    def _observe(self, obs: Any) -> Any:
        if not self._keyed:
            return np.concatenate([np.asarray(obs, dtype=np.float32).ravel(), self._history])
        entries = dict(obs) if isinstance(obs, dict) else {IMAGE_KEY: obs}
        return {**entries, HISTORY_KEY: self._history.copy()}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._history[:] = self._neutral
        return self._observe(obs), info

    def step(self, action: np.ndarray) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._history[: -self._act_dim] = self._history[self._act_dim :]
        self._history[-self._act_dim :] = np.asarray(action, dtype=np.float32).ravel()
        return self._observe(obs), reward, terminated, truncated, info


def observation_wrapper(cfg: ObservationConfig) -> Callable[[gym.Env[Any, Any]], gym.Env[Any, Any]] | None:
    """The wrapper function for `cfg` (None when nothing is added), usable as SB3's `wrapper_class`:
    a multi-task layout, the action history, then the teacher's privileged values or the student's
    history window."""
    if cfg.action_history == 0 and not cfg.privileged and cfg.history_window == 0 and cfg.layout is None:
        return None

    def wrap(env: gym.Env[Any, Any]) -> gym.Env[Any, Any]:
        from simreal.simulation.privileged import History, Privileged

        if cfg.layout is not None:
            env = Padded(env, cfg.layout)
        if cfg.action_history:
            env = ActionHistory(env, cfg.action_history)
        if cfg.privileged:
            env = Privileged(env)
        if cfg.history_window:
            env = History(env, cfg.history_window)
        return env

    return wrap
