"""What a privileged teacher sees beyond the robot, and what a student sees instead: its recent past.

`Privileged(env)` appends the sampled physics and effect values of the step to the observation (a flat
float32 Box `[obs, priv]`). Physics come from `info["dynamics"]` of every step (so a mid-episode
resample is seen when it happens), effects from the reset's `info["effects"]`; each value is normalized
relative to its nominal one - `value / nominal - 1` where the nominal is not zero, `value - nominal`
where it is, and effect values by the top of their declared range - so a nominal world reads as all
zeros. The layout (which value is where) is fixed at construction from the randomization and the
effects the env stack declares: `Privileged.labels`.

`History(env, k)` appends the last `k` (observation, action) pairs, oldest first, to the observation
(a flat float32 Box: `[obs, (obs, action)_{t-k}, ..., (obs, action)_{t-1}]`; before the first step every
slot holds the reset observation and the neutral action). A student that must infer the physics from
how the robot responded sees exactly this - never the privileged values.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from simreal.simulation.effects.base import Effect
from simreal.simulation.randomization import RandomizeDynamics


def _chain(env: gym.Env[Any, Any]) -> list[gym.Wrapper[Any, Any, Any, Any]]:
    out: list[gym.Wrapper[Any, Any, Any, Any]] = []
    while isinstance(env, gym.Wrapper):
        out.append(env)
        env = env.env
    return out


class PrivilegedView:
    """The normalized privileged vector of an env stack: every randomized physics element and every
    effect parameter drawn per episode (`labels`), computed from a step's `info`."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        self.labels: list[str] = []
        self._nominal: dict[str, float] = {}
        self._scale: dict[str, float] = {}
        chain = _chain(env)
        for wrapper in chain:
            if isinstance(wrapper, RandomizeDynamics):
                for bound in wrapper._params.bound:
                    for label, value in zip(bound.labels, bound.nominal.tolist(), strict=True):
                        self.labels.append(label)
                        self._nominal[label] = float(value)
        seen: dict[str, int] = {}
        for wrapper in reversed(chain):  # innermost first, as `record_effects` numbers repeats
            if isinstance(wrapper, Effect):
                name = wrapper.record_name()
                seen[name] = seen.get(name, 0) + 1
                prefix = name if seen[name] == 1 else f"{name}_{seen[name]}"
                for param, rng in wrapper.ranges.items():
                    if not rng.fixed:
                        label = f"{prefix}.{param}"
                        self.labels.append(label)
                        self._scale[label] = max(abs(rng.high), abs(rng.low), 1e-8)

    def __len__(self) -> int:
        return len(self.labels)

    def vector(self, info: dict[str, Any], effects: dict[str, float]) -> np.ndarray:
        """The normalized vector of a step whose info is `info`, in an episode with these effect values
        (the reset's `info["effects"]`). Stateless: one view may serve several envs."""
        dynamics = info.get("dynamics", {})
        out = np.zeros(len(self.labels), dtype=np.float32)
        for i, label in enumerate(self.labels):
            if label in self._nominal:
                value, base = float(dynamics.get(label, self._nominal[label])), self._nominal[label]
                out[i] = value / base - 1.0 if base != 0 else value - base
            else:
                out[i] = effects.get(label, 0.0) / self._scale[label]
        return out


def nothing_privileged(where: str) -> ValueError:
    return ValueError(
        f"{where}: the env reports no randomized physics (info['dynamics']) and no per-episode effects "
        "- nothing privileged to see (allowed: a task with randomization.params or ranged source_effects)"
    )


class Privileged(gym.Wrapper[np.ndarray, Any, Any, Any]):
    """Observation = `[obs, priv]` (flat float32): the env's observation and the step's privileged vector.

    `view`: the layout of another env stack, e.g. the randomized source's over a sim target, which reports
    its own shifted physics in `info["dynamics"]` and its effects in `info["effects"]`: an oracle that
    tells the teacher the target's true values (what a perfect adaptation module could give a student)."""

    def __init__(self, env: gym.Env[Any, Any], view: PrivilegedView | None = None) -> None:
        super().__init__(env)
        if not isinstance(env.observation_space, spaces.Box):
            raise ValueError(f"distill: the teacher needs a Box observation, got {env.observation_space}")
        self.view = view if view is not None else PrivilegedView(env)
        if not len(self.view):
            raise nothing_privileged("distill")
        self.labels = self.view.labels
        self._effects: dict[str, float] = {}
        self.obs_dim = int(np.prod(env.observation_space.shape))
        inf = np.full(len(self.labels), np.inf, dtype=np.float32)
        low = np.concatenate([env.observation_space.low.ravel().astype(np.float32), -inf])
        high = np.concatenate([env.observation_space.high.ravel().astype(np.float32), inf])
        self.observation_space = spaces.Box(low, high, dtype=np.float32)

    def _observe(self, obs: Any, priv: np.ndarray) -> np.ndarray:
        return np.concatenate([np.asarray(obs, dtype=np.float32).ravel(), priv])

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._effects = dict(info.get("effects", {}))  # this episode's
        return self._observe(obs, self.view.vector(info, self._effects)), info

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._observe(obs, self.view.vector(info, self._effects)), reward, terminated, truncated, info


class Window:
    """The last `k` (observation, action) pairs, oldest first, and the observation a student sees."""

    def __init__(self, obs_space: spaces.Box, act_space: spaces.Box, k: int) -> None:
        if k < 1:
            raise ValueError(f"distill.student.history: must be >= 1, got {k}")
        self.k = k
        self.obs_dim = int(np.prod(obs_space.shape))
        self.act_dim = int(np.prod(act_space.shape))
        self.step_dim = self.obs_dim + self.act_dim
        self._neutral = np.clip(np.zeros(self.act_dim), act_space.low.ravel(), act_space.high.ravel())
        self._window = np.zeros((k, self.step_dim), dtype=np.float32)
        self._last = np.zeros(self.obs_dim, dtype=np.float32)
        per_step_low = np.r_[obs_space.low.ravel(), act_space.low.ravel()]
        per_step_high = np.r_[obs_space.high.ravel(), act_space.high.ravel()]
        low = np.concatenate([obs_space.low.ravel(), np.tile(per_step_low, k)]).astype(np.float32)
        high = np.concatenate([obs_space.high.ravel(), np.tile(per_step_high, k)]).astype(np.float32)
        self.space = spaces.Box(low, high, dtype=np.float32)

    def layout(self) -> dict[str, Any]:
        """How the student's observation is filled (for export sidecars and deployers)."""
        return {
            "current_observation": [0, self.obs_dim],
            "history_steps": self.k,
            "per_step": {"observation": self.obs_dim, "action": self.act_dim},
            "order": "oldest first, after the current observation",
            "at_reset": "every slot holds the reset observation and the neutral action",
            "after_each_step": "drop the oldest slot, append (the observation acted on, the action sent)",
            "neutral_action": self._neutral.tolist(),
        }

    def observe(self, obs: np.ndarray) -> np.ndarray:
        return np.concatenate([np.asarray(obs, dtype=np.float32).ravel(), self._window.ravel()])

    def reset(self, obs: Any) -> np.ndarray:
        self._last = np.asarray(obs, dtype=np.float32).ravel()
        self._window[:] = np.r_[self._last, self._neutral]
        return self.observe(self._last)

    def push(self, action: Any, obs: Any) -> np.ndarray:
        """After a step: (the observation acted on, the action) joins the window; the new observation."""
        self._window[:-1] = self._window[1:]
        self._window[-1] = np.r_[self._last, np.asarray(action, dtype=np.float32).ravel()]
        self._last = np.asarray(obs, dtype=np.float32).ravel()
        return self.observe(self._last)


def history_layout(observation_space: spaces.Box, action_space: spaces.Box, k: int) -> dict[str, Any]:
    """The layout of a student's observation of shape `observation_space` (`[obs, k x (obs, action)]`),
    as `Window.layout` gives it (for artifacts made by fine-tuning a student)."""
    act_dim = int(np.prod(action_space.shape))
    total = int(np.prod(observation_space.shape))
    obs_dim = (total - k * act_dim) // (k + 1)
    low, high = observation_space.low.ravel()[:obs_dim], observation_space.high.ravel()[:obs_dim]
    return Window(spaces.Box(low, high, dtype=np.float32), action_space, k).layout()


class History(gym.Wrapper[np.ndarray, np.ndarray, Any, np.ndarray]):
    """Observation = [obs, (obs, action) of each of the last `k` steps, oldest first] (flat, float32)."""

    def __init__(self, env: gym.Env[Any, Any], k: int) -> None:
        super().__init__(env)
        obs_space, act_space = env.observation_space, env.action_space
        if not isinstance(obs_space, spaces.Box) or not isinstance(act_space, spaces.Box):
            raise ValueError(
                f"distill.student.history needs Box observations and actions, got {obs_space}, {act_space}"
            )
        self.window = Window(obs_space, act_space, k)
        self.observation_space = self.window.space

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        return self.window.reset(obs), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self.window.push(action, obs), reward, terminated, truncated, info
