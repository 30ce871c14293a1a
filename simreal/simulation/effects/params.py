"""Effect parameters that are either fixed or drawn uniformly once per episode.

Every numeric effect argument accepts a number (fixed, e.g. for a real-like target env) or a
`[low, high]` pair (drawn per episode at reset, e.g. for randomized source training):

    >>> p = Param.of("std", [0.05, 0.2], ge=0.0)
    >>> p.draw(np.random.default_rng(0))  # a float in [0.05, 0.2]
    >>> Param.of("steps", 3, integer=True).draw(rng)  # always 3.0, no random draw

Integer parameters (step counts) are drawn as integers, both ends inclusive.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np

Scalar: TypeAlias = float | tuple[float, float]
"""A fixed float or a `(low, high)` range drawn uniformly per episode."""

IntScalar: TypeAlias = int | tuple[int, int]
"""A fixed int or a `(low, high)` range drawn per episode as an integer, both ends inclusive."""

ScalarLike: TypeAlias = float | Sequence[float]
"""What wrappers accept for a `Scalar`: a number, or a `[low, high]` list or tuple (as YAML gives)."""

IntScalarLike: TypeAlias = int | Sequence[int]
"""What wrappers accept for an `IntScalar`."""


@dataclass(frozen=True)
class Param:
    """A validated parameter: fixed when `low == high`, else uniform on `[low, high]`."""

    name: str
    low: float
    high: float
    integer: bool = False

    @property
    def fixed(self) -> bool:
        """True when no per-episode draw is needed."""
        return self.low == self.high

    def draw(self, rng: np.random.Generator) -> float:
        """This episode's value; fixed values consume no randomness."""
        if self.low == self.high:
            return self.low
        if self.integer:
            return float(rng.integers(int(self.low), int(self.high), endpoint=True))
        return float(rng.uniform(self.low, self.high))

    def draws(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """`size` independent episodes' values at once (batched worlds), as `draw` gives them one by one."""
        if self.low == self.high:
            return np.full(size, self.low)
        if self.integer:
            return rng.integers(int(self.low), int(self.high), size=size, endpoint=True).astype(np.float64)
        return rng.uniform(self.low, self.high, size=size)

    @classmethod
    def of(
        cls,
        name: str,
        value: Any,
        *,
        integer: bool = False,
        ge: float | None = None,
        gt: float | None = None,
        le: float | None = None,
        lt: float | None = None,
        owner: str = "",
    ) -> Param:
        """Validate a number or `[low, high]` pair against the bounds; ValueErrors name `name`."""
        prefix = f"{owner}: " if owner else ""
        kind = "an integer" if integer else "a number"
        if isinstance(value, Sequence) and not isinstance(value, str):
            if len(value) != 2:
                raise ValueError(f"{prefix}{name} must be {kind} or a [low, high] pair, got {value!r}")
            low = _number(name, value[0], integer, kind, prefix)
            high = _number(name, value[1], integer, kind, prefix)
            if low > high:
                raise ValueError(f"{prefix}{name} range needs low <= high, got [{low:g}, {high:g}]")
        else:
            low = high = _number(name, value, integer, kind, prefix)
        for end in (low, high):
            _check_bounds(name, end, ge, gt, le, lt, prefix)
        return cls(name=name, low=low, high=high, integer=integer)

    def as_value(self) -> Scalar:
        """The canonical plain value: a number, or a `(low, high)` tuple for a range (ints if integer)."""
        low: float = int(self.low) if self.integer else self.low
        high: float = int(self.high) if self.integer else self.high
        return low if self.fixed else (low, high)


def _number(name: str, value: Any, integer: bool, kind: str, prefix: str) -> float:
    """A finite float from a real (or integral, when `integer`) number; bools are rejected."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise ValueError(f"{prefix}{name} must be {kind} or a [low, high] pair, got {value!r}")
    if integer and not isinstance(value, numbers.Integral):
        if not float(value).is_integer():
            raise ValueError(f"{prefix}{name} must be an integer, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{prefix}{name} must be finite, got {value!r}")
    return number


def _check_bounds(
    name: str,
    value: float,
    ge: float | None,
    gt: float | None,
    le: float | None,
    lt: float | None,
    prefix: str,
) -> None:
    """Raise naming `name` and the allowed values if `value` falls outside them."""
    if (
        (ge is None or value >= ge)
        and (gt is None or value > gt)
        and (le is None or value <= le)
        and (lt is None or value < lt)
    ):
        return
    lower = f"[{ge:g}" if ge is not None else f"({gt:g}" if gt is not None else None
    upper = f"{le:g}]" if le is not None else f"{lt:g})" if lt is not None else None
    if lower is not None and upper is not None:
        allowed = f"in {lower}, {upper}"
    elif lower is not None:
        allowed = f"{'>=' if ge is not None else '>'} {lower[1:]}"
    else:
        allowed = f"{'<=' if le is not None else '<'} {str(upper)[:-1]}"
    raise ValueError(f"{prefix}{name} must be {allowed}, got {value:g}")


@dataclass(frozen=True)
class Rule:
    """The allowed values of one effect parameter: integer or not, and its bounds.

    An effect declares one per numeric argument (`params = {"std": Rule(ge=0.0)}`); every value given
    to it - a number or a `[low, high]` pair - is checked against the rule, at config load and again
    when the wrapper is built.
    """

    integer: bool = False
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def check(self, name: str, value: Any, owner: str = "") -> Param:
        """`value` validated into a `Param`; a ValueError naming `name` and the allowed values otherwise."""
        return Param.of(
            name, value, integer=self.integer, ge=self.ge, gt=self.gt, le=self.le, lt=self.lt, owner=owner
        )


NON_NEGATIVE = Rule(ge=0.0)
PROBABILITY = Rule(ge=0.0, le=1.0)
STEPS = Rule(integer=True, ge=0)
