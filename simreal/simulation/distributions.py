"""Parameter distributions declared in YAML: uniform, log-uniform, clipped normal, choice, fixed.

A distribution draws plain floats from a passed `np.random.Generator` (never a global RNG) and
knows its support, so a spec can be rejected before any episode if it could produce a
non-physical value.

Example:
    >>> d = Distribution(dist="log_uniform", low=0.5, high=2.0)
    >>> d.sample(np.random.default_rng(0), size=3)  # three values in [0.5, 2.0]
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import model_validator

from simreal.schema import Spec

DistName = Literal["uniform", "log_uniform", "normal", "choice", "fixed"]

_FIELDS: dict[str, set[str]] = {
    "uniform": {"low", "high"},
    "log_uniform": {"low", "high"},
    "normal": {"mean", "std", "low", "high"},
    "choice": {"values"},
    "fixed": {"value"},
}
_ALL_FIELDS = {"low", "high", "mean", "std", "values", "value"}


class Distribution(Spec):
    """One scalar distribution; `normal` is clipped to [low, high], which are required for it."""

    dist: DistName = "fixed"
    """How values are drawn: uniform, log_uniform, normal (clipped to [low, high]), choice or fixed."""
    low: float | None = None
    """Lower end of the range (uniform, log_uniform) or of the clip (normal)."""
    high: float | None = None
    """Upper end of the range (uniform, log_uniform) or of the clip (normal)."""
    mean: float | None = None
    """Mean of `normal`."""
    std: float | None = None
    """Standard deviation of `normal`."""
    values: tuple[float, ...] | None = None
    """The values `choice` draws from, each equally likely."""
    value: float | None = None
    """The value of `fixed`."""

    @model_validator(mode="after")
    def _check(self) -> Distribution:
        needed = _FIELDS[self.dist]
        for name in sorted(_ALL_FIELDS):
            given = getattr(self, name) is not None
            if name in needed and not given:
                raise ValueError(
                    f"{name}: required for dist '{self.dist}' (needs {', '.join(sorted(needed))})"
                )
            if name not in needed and given:
                raise ValueError(f"{name}: not used by dist '{self.dist}' (uses {', '.join(sorted(needed))})")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"low: {self.low} > high {self.high} (allowed: low <= high)")
        if self.dist == "log_uniform" and self.low is not None and self.low <= 0:
            raise ValueError(f"low: log_uniform needs low > 0, got {self.low}")
        if self.std is not None and self.std < 0:
            raise ValueError(f"std: must be >= 0, got {self.std}")
        if self.values is not None and len(self.values) == 0:
            raise ValueError("values: choice needs at least one value")
        return self

    def support(self) -> tuple[float, float]:
        """Smallest and largest value this distribution can produce."""
        if self.dist == "choice":
            assert self.values is not None
            return min(self.values), max(self.values)
        if self.dist == "fixed":
            assert self.value is not None
            return self.value, self.value
        assert self.low is not None and self.high is not None
        return self.low, self.high

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Draw `size` independent values as a float64 array."""
        if self.dist == "uniform":
            assert self.low is not None and self.high is not None
            return rng.uniform(self.low, self.high, size=size)
        if self.dist == "log_uniform":
            assert self.low is not None and self.high is not None
            return np.exp(rng.uniform(np.log(self.low), np.log(self.high), size=size))
        if self.dist == "normal":
            assert self.mean is not None and self.std is not None
            return np.clip(rng.normal(self.mean, self.std, size=size), self.low, self.high)
        if self.dist == "choice":
            assert self.values is not None
            return rng.choice(np.asarray(self.values, dtype=np.float64), size=size)
        assert self.value is not None
        return np.full(size, self.value, dtype=np.float64)


class ParamEntry(Distribution):
    """One YAML entry of a randomization: a parameter, the elements it selects, and how a draw applies.

    `mode`: `scale` multiplies the nominal value, `abs` replaces it, `add` offsets it; `shared: true`
    draws one value for all selected elements. Subclasses check `param` against their vocabulary."""

    param: str
    """Which parameter: of `envs.params.PHYSICS` or a `module:attr` CustomParam (visuals: of `VISUALS`)."""
    names: tuple[str, ...] | None = None
    """Elements or element groups it applies to (None: every element of the parameter)."""
    mode: Literal["scale", "abs", "add"] = "scale"
    """How a draw applies: `scale` multiplies the nominal value, `abs` replaces it, `add` offsets it."""
    shared: bool = False
    """Draw one value for all selected elements instead of one per element."""
