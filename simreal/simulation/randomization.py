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
        - {param: my_pkg.params:cable_stiffness, dist: uniform, low: 0.8, high: 1.2}   # a CustomParam

`mode`: `scale` multiplies the nominal value, `abs` replaces it, `add` offsets it. `shared: true` draws
one value for all selected elements instead of one per element. Parameter names are the shared
vocabulary `envs.params.PHYSICS`, or `module:attr` references to `CustomParam`s.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from pydantic import Field, ValidationInfo, field_validator, model_validator

from envs.params import PHYSICS
from simreal.schema import Spec, offline
from simreal.simulation.adr import AdrSpec, AdrState
from simreal.simulation.distributions import ParamEntry
from simreal.simulation.physics import PhysicsSpace, custom_param
from simreal.simulation.references import is_reference
from simreal.simulation.sampling import ParamWrapper


class ParamSpec(ParamEntry):
    """One randomized (or fixed) physics parameter over selected elements."""

    @field_validator("param")
    @classmethod
    def _known(cls, value: str, info: ValidationInfo) -> str:
        if is_reference(value):
            if not offline(info.context):
                custom_param(value, "param")  # imports it: a bad reference fails at config load
            return value
        if value not in PHYSICS:
            raise ValueError(
                f"unknown physics parameter {value!r} (allowed: {', '.join(PHYSICS)}, "
                "or module:attr naming a CustomParam)"
            )
        return value


class RandomizationSpec(Spec):
    """Which parameters vary and how often they are resampled (with `adr`: ranges that grow, see `adr`)."""

    params: tuple[ParamSpec, ...] = ()
    """The physics parameters varied, drawn at every reset."""
    resample_every_steps: int | None = Field(default=None, ge=1)
    """Also redraw every this many steps of an episode (None: at resets only)."""
    adr: AdrSpec | None = None
    """Automatic domain randomization of the uniform / log_uniform ranges (None: fixed ranges)."""

    @model_validator(mode="after")
    def _adr_needs_ranges(self) -> RandomizationSpec:
        if self.adr is not None and not any(p.dist in ("uniform", "log_uniform") for p in self.params):
            raise ValueError("adr: needs uniform or log_uniform params to grow (allowed: add one)")
        return self


@dataclass(frozen=True)
class _AdrDraw:
    """A YAML entry whose draws come from its ADR dimension (its declared range bounds them)."""

    entry: ParamSpec
    state: AdrState
    index: int

    def __getattr__(self, name: str) -> Any:
        return getattr(self.entry, name)

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return self.state.draw(self.index, rng, size)


def physics_space(env: gym.Env[Any, Any], specs: tuple[ParamSpec, ...]) -> PhysicsSpace:
    """The physics of `env` with the custom parameters `specs` name."""
    return PhysicsSpace(env, [s.param for s in specs if is_reference(s.param)])


class RandomizeDynamics(ParamWrapper):
    """Resample physics parameters at every reset (and every N steps), relative to cached nominal values.

    The current absolute values go into `info["dynamics"]` (a fresh dict `"param/element" -> float`)
    at reset and at every step, for logging and as privileged information. `set_enabled(False)`
    restores the nominal values exactly and stops resampling.
    """

    info_key = "dynamics"

    def __init__(
        self,
        env: gym.Env[Any, Any],
        spec: RandomizationSpec,
        where: str = "randomization.params",
        adr: AdrState | None = None,
    ) -> None:
        """`where`: the key path of the params list, for error messages (`<where>.<i>.names: ...`).
        `adr`: the ADR state to draw from and report to (shared by a run's envs); made here when the
        spec asks for ADR and none is given."""
        super().__init__(env, physics_space(env, spec.params), spec.params, where)
        self._every = spec.resample_every_steps
        self._steps = 0
        self._new_episode = False
        self._pin: tuple[int, str] | None = None  # this env's episode: its pinned edge and its return
        self._return = 0.0
        self.adr = adr if adr is not None or spec.adr is None else AdrState.for_entries(spec.adr, spec.params)
        if self.adr is not None:
            dims = self.adr.dimension_of(spec.params)
            for i, bound in enumerate(self._params.bound):
                if i in dims:
                    self._params.bound[i] = replace(bound, spec=_AdrDraw(spec.params[i], self.adr, dims[i]))

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        self._steps = 0
        self._new_episode = True
        return super().reset(seed=seed, options=options)

    def resample(self) -> dict[str, float]:
        if self.adr is not None:  # the state is shared by a run's envs; the episode is this env's own
            if self._new_episode:  # ADR decides the episode's edge before the draw
                self.adr.begin_episode(self.np_random)
                self._pin, self._return = self.adr.pinned, 0.0
            self.adr.pinned = self._pin
        self._new_episode = False
        return super().resample()

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._steps += 1
        if self.adr is not None and self._pin is not None:
            self._return += float(reward)
            if terminated or truncated:
                self.adr.pinned, self.adr.episode_return = self._pin, self._return
                self.adr.end_episode()
                self._pin = None
        if self._enabled and self._every is not None and self._steps % self._every == 0:
            self.resample()
        info["dynamics"] = dict(self._params.values)
        return obs, reward, terminated, truncated, info
