"""Drawing named parameters relative to cached nominal values: shared by physics and visual randomization.

A `BoundParam` is one YAML entry resolved against an env (element indices, labels, nominal values);
a `ParamSet` owns the nominal arrays of every parameter it touches, draws all entries from one
generator, applies whole arrays through a setter, and restores nominal exactly. Samples never compound:
every draw starts again from the cached nominal values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import gymnasium as gym
import numpy as np


class SampledSpec(Protocol):
    """What a YAML entry provides to be drawn: parameter name, distribution, mode, one draw or many."""

    @property
    def param(self) -> str: ...

    @property
    def mode(self) -> Literal["scale", "abs", "add"]: ...

    @property
    def shared(self) -> bool: ...

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray: ...


@dataclass(frozen=True)
class BoundParam:
    """A spec resolved against one env: element indices, `param/element` labels, nominal values."""

    spec: SampledSpec
    indices: np.ndarray
    labels: tuple[str, ...]
    nominal: np.ndarray
    clip: tuple[float, float] | None = None

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        raw = np.broadcast_to(
            self.spec.sample(rng, 1 if self.spec.shared else len(self.indices)), self.nominal.shape
        )
        if self.spec.mode == "scale":
            values = self.nominal * raw
        elif self.spec.mode == "add":
            values = self.nominal + raw
        else:
            values = np.array(raw, dtype=np.float64)
        return values if self.clip is None else np.clip(values, *self.clip)


class ParamSet:
    """The parameters a randomizer touches: cached nominal arrays, draw-and-apply, exact restore."""

    def __init__(
        self,
        bound: Sequence[BoundParam],
        get: Callable[[str], np.ndarray],
        set_: Callable[[str, np.ndarray], None],
    ) -> None:
        self.bound = list(bound)
        self._set = set_
        names = dict.fromkeys(b.spec.param for b in self.bound)
        self._nominal = {name: np.array(get(name), dtype=np.float64, copy=True) for name in names}
        self.values: dict[str, float] = {}

    @property
    def nominal(self) -> dict[str, np.ndarray]:
        """Copies of the cached nominal arrays."""
        return {k: v.copy() for k, v in self._nominal.items()}

    def restore(self) -> None:
        """Apply the nominal values exactly."""
        for name, values in self._nominal.items():
            self._set(name, values)
        self.values = {}

    def resample(self, rng: np.random.Generator) -> dict[str, float]:
        """Draw every entry from nominal, apply whole arrays, return the values keyed `param/element`."""
        arrays = {name: values.copy() for name, values in self._nominal.items()}
        values: dict[str, float] = {}
        for bound in self.bound:
            drawn = bound.draw(rng)
            arrays[bound.spec.param][bound.indices] = drawn
            values.update(zip(bound.labels, drawn.tolist(), strict=True))
        for name, array in arrays.items():
            self._set(name, array)
        self.values = values
        return values


class ParamWrapper(gym.Wrapper[Any, Any, Any, Any]):
    """Base of the randomization wrappers: a `ParamSet` drawn from the env's own seeded generator.

    Subclasses set `self._params` and `self._enabled` in `__init__` and call `resample()` at reset.
    """

    _params: ParamSet
    _enabled: bool

    @property
    def nominal(self) -> dict[str, np.ndarray]:
        """Copies of the cached nominal arrays of every randomized parameter."""
        return self._params.nominal

    @property
    def current(self) -> dict[str, float]:
        """The values applied now, keyed `param/element`."""
        return dict(self._params.values)

    def set_enabled(self, enabled: bool) -> None:
        """Turn randomization on or off; off restores the nominal values exactly."""
        self._enabled = enabled
        if not enabled:
            self._params.restore()

    def resample(self) -> dict[str, float]:
        """Draw and apply new values from nominal; returns them keyed `param/element`."""
        return self._params.resample(self.np_random)
