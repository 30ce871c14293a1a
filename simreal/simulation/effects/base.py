"""What every effect shares: the per-episode draw-and-record step, space checks, neutral values, noise.

An effect is one small class. Subclass `ActionEffect` (implement `action()`, as for Gymnasium's
`ActionWrapper`) or `ObservationEffect` (implement `observation()`, as for `ObservationWrapper`), or
`Effect` itself for anything else, and declare its numeric arguments with their allowed values::

    class GripperSlip(ActionEffect):  # with probability `prob` per step the gripper command is lost
        name = "gripper_slip"
        params = {"prob": PROBABILITY}

        def __init__(self, env, prob):
            super().__init__(env, prob=prob)

        def action(self, action):
            lost = self.np_random.random() < self.now["prob"]
            return np.where(self.gripper, 0.0, action) if lost else action

Every declared argument is a number (fixed) or a `[low, high]` pair drawn once per episode. At reset
the base draws all of them from the env's own `np_random` (in declaration order), calls
`start_episode(rng)` for the subclass's own per-episode state, and records the values in
`info["effects"]` as `"<name>.<param>"`; `self.now` holds this episode's values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar, SupportsFloat, TypeAlias

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from simreal.simulation.effects.params import Param, Rule

Array: TypeAlias = NDArray[Any]
BoxEnv: TypeAlias = gym.Env[Array, Array]
"""An env with continuous Box observation and action spaces."""

INFO_KEY = "effects"
"""Reset-info key holding `{"<effect>.<param>": value}` for every effect in the stack."""


def float_box(space: gym.Space[Any], wrapper: str, which: str) -> gym.spaces.Box:
    """`space` if it is a continuous (floating-point) Box, else a ValueError naming wrapper and space."""
    if not isinstance(space, gym.spaces.Box) or not np.issubdtype(space.dtype, np.floating):
        raise ValueError(f"{wrapper} needs a continuous (float) Box {which} space, got {space}")
    return space


def bounded_box(space: gym.Space[Any], wrapper: str, which: str) -> gym.spaces.Box:
    """`space` if it is a float Box with finite bounds on every component."""
    box = float_box(space, wrapper, which)
    if not box.is_bounded("both"):
        raise ValueError(f"{wrapper} needs finite {which} space bounds, got {box}")
    return box


def neutral_value(box: gym.spaces.Box) -> Array:
    """The 'do nothing' value per component: 0 if inside the bounds, else the midpoint.

    When 0 is outside and one bound is infinite there is no midpoint: the finite bound is used.
    """
    low = box.low.astype(np.float64)
    high = box.high.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        mid = np.where(np.isfinite(low) & np.isfinite(high), (low + high) / 2.0, np.clip(0.0, low, high))
    inside = (low <= 0.0) & (high >= 0.0)
    return np.where(inside, 0.0, mid).astype(box.dtype)


def zeros_in(box: gym.spaces.Box) -> Array:
    """All-zero value clipped into the box (a dropped reading that still lies inside the space)."""
    return np.clip(np.zeros(box.shape), box.low, box.high).astype(box.dtype)


def record_effects(info: Mapping[str, Any], name: str, values: Mapping[str, float]) -> dict[str, Any]:
    """A copy of `info` with `values` merged into `info["effects"]` as `"<name>.<param>"` keys.

    Wrappers nest, so an inner effect's entries are kept; a second effect of the same kind is
    recorded as `<name>_2`, a third as `<name>_3`, and so on.
    """
    effects = dict(info.get(INFO_KEY, {}))
    prefix, n = name, 1
    while any(key.startswith(prefix + ".") for key in effects):
        n += 1
        prefix = f"{name}_{n}"
    effects.update({f"{prefix}.{param}": float(value) for param, value in values.items()})
    merged = dict(info)
    merged[INFO_KEY] = effects
    return merged


class NoiseStream:
    """Per-step Gaussian noise vectors, drawn from `rng` a block of steps at a time.

    One `rng.normal` call per block instead of per step keeps the hot path to an index and an
    add (the per-step call costs about as much as the rest of a wrapper). Each `next()` returns a
    fresh row that shares no memory with the others, with `offset` (e.g. a per-episode bias)
    already added. Noise is drawn ahead of use from the env's own generator, so seeded runs repeat
    exactly; a new stream is started at every reset and the unused rows are dropped.
    """

    __slots__ = ("_rng", "_std", "_offset", "_shape", "_dtype", "_rows", "_steps", "_i")

    BLOCK_ELEMENTS = 16_384
    """Largest block, in array elements; the block holds at most 256 steps."""

    def __init__(
        self,
        rng: np.random.Generator,
        std: float,
        shape: tuple[int, ...],
        dtype: np.dtype[Any],
        offset: Array | None = None,
    ) -> None:
        self._rng, self._std, self._offset = rng, std, offset
        self._shape, self._dtype = shape, dtype
        self._steps = max(1, min(256, self.BLOCK_ELEMENTS // max(1, int(np.prod(shape)))))
        self._rows: Array = np.empty((0, *shape), dtype=dtype)
        self._i = 0

    def next(self) -> Array:
        """The next noise vector (drawing a new block when the current one is used up)."""
        if self._i == len(self._rows):
            rows = self._rng.normal(0.0, self._std, (self._steps, *self._shape))
            if self._offset is not None:
                rows += self._offset
            self._rows = rows.astype(self._dtype, copy=False)
            self._i = 0
        row = self._rows[self._i]
        self._i += 1
        return row


def snake_case(name: str) -> str:
    """`GripperSlip` -> `gripper_slip` (the default record name of a user's effect)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Effect(gym.Wrapper[Any, Any, Any, Any], gym.utils.RecordConstructorArgs):
    """Base of every effect: validated per-episode parameters, drawn and recorded at reset.

    Subclasses set `name` (the `info["effects"]` prefix; default: the class name in snake case) and
    `params` (argument -> `Rule`), and call `super().__init__(env, **their_arguments)`.
    """

    name: ClassVar[str] = ""
    params: ClassVar[Mapping[str, Rule]] = {}

    def __init__(self, env: gym.Env[Any, Any], **values: Any) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, **values)
        gym.Wrapper.__init__(self, env)
        owner = type(self).__name__
        unknown = sorted(set(values) - set(self.params))
        if unknown:
            raise ValueError(
                f"{owner}: {unknown[0]} is not a declared parameter (allowed: {', '.join(self.params)})"
            )
        self.ranges: dict[str, Param] = {
            k: rule.check(k, values[k], owner) for k, rule in self.params.items()
        }
        self.now: dict[str, float] = {k: p.low for k, p in self.ranges.items()}
        for key, value in self.ranges.items():
            setattr(self, key, value)

    @classmethod
    def record_name(cls) -> str:
        return cls.name or snake_case(cls.__name__)

    def start_episode(self, rng: np.random.Generator) -> None:
        """Set up this episode's state from `self.now` (drawn already); per-step randomness from `rng`."""

    def reset_observation(self, obs: Any) -> Any:
        """What the agent sees at reset (the inner observation by default)."""
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        rng = self.np_random
        self.now = {k: p.draw(rng) for k, p in self.ranges.items()}
        self.start_episode(rng)
        return self.reset_observation(obs), record_effects(info, self.record_name(), self.now)


class ActionEffect(Effect, gym.ActionWrapper[Any, Any, Any]):
    """An effect on the command: implement `action(action) -> what the inner env receives`."""


class ObservationEffect(Effect, gym.ObservationWrapper[Any, Any, Any]):
    """An effect on the reading: implement `observation(obs) -> what the agent sees`, applied after
    every step and, unless `reset_observation` says otherwise, at reset too (as Gymnasium does)."""

    def reset_observation(self, obs: Any) -> Any:
        return self.observation(obs)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self.observation(obs), reward, terminated, truncated, info
