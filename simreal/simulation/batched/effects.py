"""The built-in real-like effects over N worlds at once: per-world episode values, arrays per step.

Each class is the batched twin of one wrapper in `simreal.simulation.effects` and keeps its semantics:
per-episode values drawn at each world's own reset from the wrapper's `Param` (for all worlds resetting
together at once), recorded in `info["effects"]` under the same `<name>.<param>` keys (a repeated effect
as `<name>_2`, ...); per-step randomness (noise, drops) drawn as (N, dim) arrays. Order is the YAML's:
`specs[0]` is innermost (actions pass through the list last to first, observations first to last).
`control_jitter` (which steps a world several times) and user effects have no batched form:
`BatchedEffects` refuses them, naming the supported ones.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from simreal.schema import ConfigError
from simreal.simulation.effects import EFFECTS, EffectSpec, Param, neutral_value
from simreal.simulation.effects.base import zeros_in

Array = np.ndarray


class BatchedEffect:
    """One effect over N worlds; `now[param]` holds each world's value for its current episode."""

    name: ClassVar[str]

    def __init__(self, spec: EffectSpec, nworld: int, action: gym.spaces.Box, obs: gym.spaces.Box) -> None:
        cls = EFFECTS[spec.type]
        self.ranges: dict[str, Param] = {
            key: rule.check(key, spec.args.get(key, _default(cls, key)), cls.__name__)
            for key, rule in cls.params.items()
        }
        self.now = {key: np.full(nworld, p.low) for key, p in self.ranges.items()}
        self.action_space, self.observation_space = action, obs

    def start(self, worlds: Array, rng: np.random.Generator) -> dict[str, Array]:
        """Draw new episodes' values for `worlds` (each parameter for all of them at once); returns them."""
        drawn = {key: p.draws(rng, len(worlds)) for key, p in self.ranges.items()}
        for key, values in drawn.items():
            self.now[key][worlds] = values
        self.begin(worlds, rng)
        return drawn

    def begin(self, worlds: Array, rng: np.random.Generator) -> None:
        """Per-episode state of `worlds` beyond their drawn values."""

    def act(self, action: Array, rng: np.random.Generator) -> Array:
        return action

    def observe(self, obs: Array, rng: np.random.Generator) -> Array:
        return obs

    def reset_observation(self, obs: Array, worlds: Array, rng: np.random.Generator) -> Array:
        """What the agent sees at the reset of `worlds` (rows of `obs`); default: unchanged."""
        return obs


def _default(cls: type[Any], key: str) -> Any:
    return inspect.signature(cls.__init__).parameters[key].default


def _delayed(hist: Array, steps: Array, new: Array) -> Array:
    """A per-world delay line: `hist[:, j]` holds the value of j+1 steps ago. Returns what each world
    receives now (`hist[:, k-1]`, or `new` itself for k = 0) and shifts `new` in."""
    k = steps.astype(np.int64)
    out = np.where((k > 0)[:, None], hist[np.arange(len(k)), np.maximum(k - 1, 0)], new)
    hist[:, 1:] = hist[:, :-1]
    hist[:, 0] = new
    return out


class ActionNoise(BatchedEffect):
    name = "action_noise"

    def act(self, action: Array, rng: np.random.Generator) -> Array:
        noisy = action + rng.standard_normal(action.shape) * self.now["std"][:, None]
        return np.clip(noisy, self.action_space.low, self.action_space.high).astype(action.dtype)


class ActionDelay(BatchedEffect):
    """`hist[:, j]` is the action of j+1 steps ago; a world with delay k receives `hist[:, k-1]`."""

    name = "action_delay"

    def __init__(self, spec: EffectSpec, nworld: int, action: gym.spaces.Box, obs: gym.spaces.Box) -> None:
        super().__init__(spec, nworld, action, obs)
        self.neutral = neutral_value(action)
        depth = max(1, int(self.ranges["steps"].high))
        self.hist = np.tile(self.neutral, (nworld, depth, 1))

    def begin(self, worlds: Array, rng: np.random.Generator) -> None:
        self.hist[worlds] = self.neutral

    def act(self, action: Array, rng: np.random.Generator) -> Array:
        return _delayed(self.hist, self.now["steps"], action)


class ActuatorDeadZone(BatchedEffect):
    name = "actuator_dead_zone"

    def __init__(self, spec: EffectSpec, nworld: int, action: gym.spaces.Box, obs: gym.spaces.Box) -> None:
        super().__init__(spec, nworld, action, obs)
        self.neutral = neutral_value(action)
        self._half_range = (action.high.astype(np.float64) - action.low) / 2.0
        self.width = np.zeros((nworld, *action.shape), dtype=action.dtype)

    def begin(self, worlds: Array, rng: np.random.Generator) -> None:
        self.width[worlds] = self.now["threshold"][worlds, None] * self._half_range

    def act(self, action: Array, rng: np.random.Generator) -> Array:
        return np.where(np.abs(action - self.neutral) < self.width, self.neutral, action)


class ActuatorSaturation(BatchedEffect):
    name = "actuator_saturation"

    def __init__(self, spec: EffectSpec, nworld: int, action: gym.spaces.Box, obs: gym.spaces.Box) -> None:
        super().__init__(spec, nworld, action, obs)
        self.low = np.tile(action.low, (nworld, 1))
        self.high = np.tile(action.high, (nworld, 1))

    def begin(self, worlds: Array, rng: np.random.Generator) -> None:
        box = self.action_space
        n = neutral_value(box).astype(np.float64)
        limit = self.now["limit"][worlds, None]
        self.low[worlds] = n + limit * (box.low - n)
        self.high[worlds] = n + limit * (box.high - n)

    def act(self, action: Array, rng: np.random.Generator) -> Array:
        return np.maximum(np.minimum(action, self.high), self.low)


class ObservationNoise(BatchedEffect):
    name = "observation_noise"

    def __init__(self, spec: EffectSpec, nworld: int, action: gym.spaces.Box, obs: gym.spaces.Box) -> None:
        super().__init__(spec, nworld, action, obs)
        self.bias = np.zeros((nworld, *obs.shape))
        self.clip = bool(np.isfinite(obs.low).any() or np.isfinite(obs.high).any())

    def begin(self, worlds: Array, rng: np.random.Generator) -> None:
        std = self.now["bias_std"][worlds].reshape(-1, *[1] * (self.bias.ndim - 1))
        self.bias[worlds] = rng.standard_normal((len(worlds), *self.bias.shape[1:])) * std

    def _noisy(self, obs: Array, worlds: Array | slice, rng: np.random.Generator) -> Array:
        noisy = obs + self.bias[worlds] + rng.standard_normal(obs.shape) * self.now["std"][worlds, None]
        if self.clip:
            noisy = np.clip(noisy, self.observation_space.low, self.observation_space.high)
        return noisy.astype(obs.dtype)

    def observe(self, obs: Array, rng: np.random.Generator) -> Array:
        return self._noisy(obs, slice(None), rng)

    def reset_observation(self, obs: Array, worlds: Array, rng: np.random.Generator) -> Array:
        out = obs.copy()
        out[worlds] = self._noisy(obs[worlds], worlds, rng)
        return out


class ObservationDelay(BatchedEffect):
    name = "observation_delay"

    def __init__(self, spec: EffectSpec, nworld: int, action: gym.spaces.Box, obs: gym.spaces.Box) -> None:
        super().__init__(spec, nworld, action, obs)
        self.hist = np.zeros((nworld, max(1, int(self.ranges["steps"].high)), *obs.shape), dtype=obs.dtype)

    def observe(self, obs: Array, rng: np.random.Generator) -> Array:
        return _delayed(self.hist, self.now["steps"], obs)

    def reset_observation(self, obs: Array, worlds: Array, rng: np.random.Generator) -> Array:
        self.hist[worlds] = obs[worlds, None]
        return obs


class DroppedObservation(BatchedEffect):
    name = "dropped_observation"

    def observe(self, obs: Array, rng: np.random.Generator) -> Array:
        dropped = rng.random(len(obs)) < self.now["prob"]
        return np.where(dropped[:, None], zeros_in(self.observation_space), obs)


class StuckObservation(BatchedEffect):
    name = "stuck_observation"

    def __init__(self, spec: EffectSpec, nworld: int, action: gym.spaces.Box, obs: gym.spaces.Box) -> None:
        super().__init__(spec, nworld, action, obs)
        self.last = np.zeros((nworld, *obs.shape), dtype=obs.dtype)

    def observe(self, obs: Array, rng: np.random.Generator) -> Array:
        stuck = rng.random(len(obs)) < self.now["prob"]
        out = np.where(stuck[:, None], self.last, obs)
        self.last = out.copy()
        return out

    def reset_observation(self, obs: Array, worlds: Array, rng: np.random.Generator) -> Array:
        self.last[worlds] = obs[worlds]
        return obs


BATCHED: dict[str, type[BatchedEffect]] = {
    cls.name: cls
    for cls in (
        ActionNoise,
        ActionDelay,
        ActuatorDeadZone,
        ActuatorSaturation,
        ObservationNoise,
        ObservationDelay,
        DroppedObservation,
        StuckObservation,
    )
}


def check_effects(specs: Sequence[EffectSpec], where: str) -> None:
    """Every effect must have a batched form; else a one-line ConfigError naming `<where>.<i>.type`."""
    for i, spec in enumerate(specs):
        if spec.type not in BATCHED:
            raise ConfigError(
                f"{where}.{i}.type: {spec.type} has no batched form for sim_backend: warp "
                f"(allowed: {', '.join(BATCHED)}; or sim_backend: gymnasium)"
            )


class BatchedEffects:
    """An ordered effect stack over N worlds, with the wrappers' `info["effects"]` record names."""

    def __init__(
        self,
        specs: Sequence[EffectSpec],
        nworld: int,
        action: gym.spaces.Box,
        obs: gym.spaces.Box,
        where: str,
    ) -> None:
        check_effects(specs, where)
        self.effects = [BATCHED[s.type](s, nworld, action, obs) for s in specs]
        self.prefixes: list[str] = []
        for e in self.effects:
            n = sum(p == e.name or p.startswith(e.name + "_") for p in self.prefixes) + 1
            self.prefixes.append(e.name if n == 1 else f"{e.name}_{n}")

    def start(self, worlds: Array, rng: np.random.Generator) -> list[dict[str, float]]:
        """New episodes for `worlds`: their values, keyed as the wrappers record them in `info["effects"]`."""
        columns: dict[str, Array] = {}
        for prefix, effect in zip(self.prefixes, self.effects, strict=True):
            for key, values in effect.start(worlds, rng).items():
                columns[f"{prefix}.{key}"] = values
        names = list(columns)
        rows = np.stack([columns[n] for n in names], axis=1).tolist() if names else [[] for _ in worlds]
        return [dict(zip(names, row, strict=True)) for row in rows]

    def act(self, action: Array, rng: np.random.Generator) -> Array:
        for effect in reversed(self.effects):
            action = effect.act(action, rng)
        return action

    def observe(self, obs: Array, rng: np.random.Generator) -> Array:
        for effect in self.effects:
            obs = effect.observe(obs, rng)
        return obs

    def reset_observation(self, obs: Array, worlds: Array, rng: np.random.Generator) -> Array:
        for effect in self.effects:
            obs = effect.reset_observation(obs, worlds, rng)
        return obs
