"""Domain randomization of physics parameters, always relative to cached nominal values.

A `RandomizationSpec` (YAML data) lists parameters to vary; `RandomizeDynamics` binds it to an env,
checks every selector and the physical range of every value once, at construction, and then draws
new values at every reset (and optionally every N steps) from the env's own `np_random`.

YAML shape::

    randomization:
      resample_every_steps: null          # or an int: also resample mid-episode
      params:
        - {param: body_mass, names: [pole], dist: log_uniform, low: 0.5, high: 2.0, mode: scale}
        - {param: friction, dist: uniform, low: 0.7, high: 1.3}      # names omitted: all elements
        - {param: gravity, names: [z], dist: normal, mean: 0, std: 0.4, low: -1, high: 1, mode: add}
        - {param: frame_skip, dist: choice, values: [1, 2, 3], mode: abs}

`mode`: `scale` multiplies the nominal value, `abs` replaces it, `add` offsets it. `shared: true` draws
one value for all selected elements instead of one per element.
"""

from __future__ import annotations

from typing import Any, Literal, SupportsFloat

import gymnasium as gym
import numpy as np

from simreal.config_base import ConfigError, Spec
from simreal.distributions import Distribution
from simreal.physics import LOWER_BOUNDS, ParamName, PhysicsParams, physics_of
from simreal.sampling import BoundParam, ParamSet, ParamWrapper

Mode = Literal["scale", "abs", "add"]


class ParamSpec(Distribution):
    """One randomized (or fixed) physics parameter over selected elements."""

    param: ParamName
    names: tuple[str, ...] | None = None
    mode: Mode = "scale"
    shared: bool = False


class RandomizationSpec(Spec):
    """Which parameters vary and how often they are resampled."""

    params: tuple[ParamSpec, ...] = ()
    resample_every_steps: int | None = None


def _bind(physics: PhysicsParams, spec: ParamSpec, where: str) -> BoundParam:
    """Resolve selectors and reject values that could be non-physical; errors name `where`."""
    allowed = physics.param_names()
    if spec.param not in allowed:
        raise ConfigError(f"{where}.param: unknown parameter {spec.param!r} (allowed: {', '.join(allowed)})")
    elements = physics.element_names(spec.param)
    names = spec.names if spec.names is not None else elements
    missing = [n for n in names if n not in elements]
    if missing or not names:
        raise ConfigError(
            f"{where}.names: {missing or '[]'} match no {spec.param} element (allowed: {', '.join(elements)})"
        )
    indices = np.array([elements.index(n) for n in names], dtype=np.int64)
    nominal_all = physics.get_param(spec.param)
    nominal = nominal_all[indices].copy()
    low, high = spec.support()
    if spec.mode == "scale":
        extremes = np.stack([nominal * low, nominal * high])
    elif spec.mode == "add":
        extremes = np.stack([nominal + low, nominal + high])
    else:
        extremes = np.stack([np.full_like(nominal, low), np.full_like(nominal, high)])
    if spec.param in LOWER_BOUNDS:
        bound, inclusive = LOWER_BOUNDS[spec.param]
        worst = extremes.min(axis=0)
        bad = worst < bound if inclusive else worst <= bound
        if bad.any():
            i = int(np.argmax(bad))
            op = ">=" if inclusive else ">"
            raise ConfigError(
                f"{where}: {spec.param} of {names[i]!r} can become {worst[i]:g} "
                f"(nominal {nominal[i]:g}, {spec.mode} [{low:g}, {high:g}]; "
                f"allowed: {spec.param} {op} {bound:g})"
            )
    labels = tuple(f"{spec.param}/{n}" for n in names)
    return BoundParam(spec=spec, indices=indices, labels=labels, nominal=nominal)


class RandomizeDynamics(ParamWrapper):
    """Resample physics parameters at every reset (and every N steps), relative to cached nominal values.

    The current absolute values go into `info["dynamics"]` (a fresh dict `"param/element" -> float`)
    at reset and at every step, for logging and as privileged information. `set_enabled(False)`
    restores the nominal values exactly and stops resampling.
    """

    def __init__(self, env: gym.Env[Any, Any], spec: RandomizationSpec, where: str = "randomization") -> None:
        super().__init__(env)
        if spec.resample_every_steps is not None and spec.resample_every_steps < 1:
            raise ConfigError(
                f"{where}.resample_every_steps: must be >= 1 or null, got {spec.resample_every_steps}"
            )
        self._physics = physics_of(env)
        bound = [_bind(self._physics, p, f"{where}.params.{i}") for i, p in enumerate(spec.params)]
        self._params = ParamSet(bound, self._physics.get_param, self._physics.set_param)
        self._every = spec.resample_every_steps
        self._enabled = True
        self._steps = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._steps = 0
        if self._enabled:
            self.resample()
        info["dynamics"] = dict(self._params.values)
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._steps += 1
        if self._enabled and self._every is not None and self._steps % self._every == 0:
            self.resample()
        info["dynamics"] = dict(self._params.values)
        return obs, reward, terminated, truncated, info
