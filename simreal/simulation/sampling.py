"""Binding YAML parameter entries to an env and drawing them: one mechanism for physics and visuals.

A `ParamSpace` is one family of an env's named parameters (its physics, or what its camera sees): names,
what each array element is, the vocabulary's `ParamInfo` (physical bounds, allowed modes) and get/set.
`bind` resolves one YAML entry against a space - selectors, mode, and every value the distribution can
produce checked against the physical bounds - into a `BoundParam`. A `ParamSet` owns the nominal arrays
of the parameters it touches, draws every entry from one generator, applies whole arrays and restores
nominal exactly. Samples never compound: every draw starts again from the cached nominal values.

Selectors name an element (`pole`, `cpole.g`) or a group of elements (`cpole` = `cpole.r|g|b`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import gymnasium as gym
import numpy as np

from envs.params import ParamInfo
from simreal.schema import ConfigError


class ParamSpace(Protocol):
    """One family of named parameters of an env."""

    family: str

    def names(self) -> tuple[str, ...]: ...

    def info(self, param: str) -> ParamInfo: ...

    def elements(self, param: str) -> tuple[str, ...]: ...

    def get(self, param: str) -> np.ndarray: ...

    def set(self, param: str, values: np.ndarray) -> None: ...


class SampledSpec(Protocol):
    """What a YAML entry provides to be bound and drawn."""

    @property
    def param(self) -> str: ...

    @property
    def names(self) -> tuple[str, ...] | None: ...

    @property
    def mode(self) -> Literal["scale", "abs", "add"]: ...

    @property
    def shared(self) -> bool: ...

    def support(self) -> tuple[float, float]: ...

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray: ...


def short_name(param: str) -> str:
    """The label of a parameter in records: its name, or the attribute of a `module:attr` reference."""
    return param.rpartition(":")[2]


@dataclass(frozen=True)
class BoundParam:
    """A spec resolved against one env: element indices, `param/element` labels, nominal values."""

    spec: SampledSpec
    indices: np.ndarray
    labels: tuple[str, ...]
    nominal: np.ndarray
    clip: tuple[float, float] | None = None

    def draw(self, rng: np.random.Generator, worlds: int | None = None) -> np.ndarray:
        """One draw of the selected elements' values - or with `worlds`, one per world, `(worlds, n)`."""
        if worlds is None:
            return self.values(self.spec.sample(rng, self.draws_per_world))
        return self.values(self.spec.sample(rng, worlds * self.draws_per_world).reshape(worlds, -1))

    @property
    def draws_per_world(self) -> int:
        """Independent values one draw takes: one if `shared`, else one per selected element."""
        return 1 if self.spec.shared else len(self.indices)

    def values(self, raw: np.ndarray) -> np.ndarray:
        """Drawn numbers (`(..., draws_per_world)`) -> the elements' values: mode applied, clipped."""
        raw = np.broadcast_to(raw, (*raw.shape[:-1], len(self.nominal)))
        if self.spec.mode == "scale":
            values = self.nominal * raw
        elif self.spec.mode == "add":
            values = self.nominal + raw
        else:
            values = np.array(raw, dtype=np.float64)
        return values if self.clip is None else np.clip(values, *self.clip)


def _select(space: ParamSpace, spec: SampledSpec, where: str) -> list[int]:
    """Indices of the elements the selectors name (an element, or a group: the part before the last '.')."""
    elements = space.elements(spec.param)
    if not elements:
        raise ConfigError(
            f"{where}.names: {spec.param} has no elements in this env (allowed: other parameters)"
        )
    names = spec.names if spec.names is not None else elements
    if not names:
        raise ConfigError(f"{where}.names: [] selects nothing (allowed: {', '.join(elements)})")
    indices: list[int] = []
    for name in names:
        matched = [i for i, e in enumerate(elements) if e == name or e.rpartition(".")[0] == name]
        if not matched:
            groups = list(dict.fromkeys(e.rpartition(".")[0] for e in elements if "." in e))
            parts = dict.fromkeys(e.rpartition(".")[2] for e in elements if "." in e)
            choices = f"{', '.join(groups)}; one part: .{'|.'.join(parts)}" if groups else ", ".join(elements)
            raise ConfigError(f"{where}.names: {[name]} match no {spec.param} element (allowed: {choices})")
        indices += [i for i in matched if i not in indices]
    return indices


def bind(space: ParamSpace, spec: SampledSpec, where: str) -> BoundParam:
    """Resolve `spec` against `space` and reject values that could be non-physical; errors name `where`."""
    allowed = space.names()
    if spec.param not in allowed:
        hint = getattr(space, "hint", "")
        raise ConfigError(
            f"{where}.param: unknown {space.family} parameter {spec.param!r} for this env "
            f"(allowed: {', '.join(allowed) or 'none'}{hint})"
        )
    info = space.info(spec.param)
    if spec.mode not in info.modes:
        raise ConfigError(
            f"{where}.mode: {spec.mode!r} not allowed for {spec.param} (allowed: {', '.join(info.modes)})"
        )
    indices = _select(space, spec, where)
    elements = space.elements(spec.param)
    idx = np.array(indices, dtype=np.int64)
    try:
        nominal = np.asarray(space.get(spec.param), dtype=np.float64)[idx].copy()
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from None
    low, high = spec.support()
    extremes = {
        "scale": np.stack([nominal * low, nominal * high]),
        "add": np.stack([nominal + low, nominal + high]),
        "abs": np.stack([np.full_like(nominal, low), np.full_like(nominal, high)]),
    }[spec.mode]
    if info.clip is None:
        bad = info.violations(extremes).any(axis=0)
        if bad.any():
            i = int(np.argmax(bad))
            worst = extremes[:, i][info.violations(extremes[:, i])][0]
            name = short_name(spec.param)
            raise ConfigError(
                f"{where}: {name} of {elements[indices[i]]!r} can become {worst:g} "
                f"(nominal {nominal[i]:g}, {spec.mode} [{low:g}, {high:g}]; "
                f"allowed: {name} {info.allowed()})"
            )
    labels = tuple(f"{short_name(spec.param)}/{elements[i]}" for i in indices)
    return BoundParam(spec=spec, indices=idx, labels=labels, nominal=nominal, clip=info.clip)


class ParamSet:
    """The parameters a randomizer touches: cached nominal arrays, draw-and-apply, exact restore."""

    def __init__(self, bound: Sequence[BoundParam], space: ParamSpace) -> None:
        self.bound = list(bound)
        self._space = space
        names = dict.fromkeys(b.spec.param for b in self.bound)
        self._nominal = {name: np.array(space.get(name), dtype=np.float64, copy=True) for name in names}
        self.values: dict[str, float] = {}

    @property
    def nominal(self) -> dict[str, np.ndarray]:
        """Copies of the cached nominal arrays."""
        return {k: v.copy() for k, v in self._nominal.items()}

    def restore(self) -> None:
        """Apply the nominal values exactly."""
        for name, values in self._nominal.items():
            self._space.set(name, values)
        self.values = {}

    def resample(self, rng: np.random.Generator) -> dict[str, float]:
        """Draw every entry from nominal, apply whole arrays, return the values keyed `param/element`."""
        return self.apply([bound.draw(rng) for bound in self.bound])

    def apply(self, drawn: Sequence[np.ndarray]) -> dict[str, float]:
        """Apply given element values (one array per entry, as `BoundParam.values` makes them) over the
        nominal arrays; return them keyed `param/element`."""
        arrays = {name: values.copy() for name, values in self._nominal.items()}
        values: dict[str, float] = {}
        for bound, elements in zip(self.bound, drawn, strict=True):
            arrays[bound.spec.param][bound.indices] = elements
            values.update(zip(bound.labels, np.asarray(elements).tolist(), strict=True))
        for name, array in arrays.items():
            self._space.set(name, array)
        self.values = values
        return values


class ParamWrapper(gym.Wrapper[Any, Any, Any, Any]):
    """Base of the randomization wrappers: entries bound to one space, drawn from the env's own generator.

    `info_key` names where the applied values go in the reset (and step) info."""

    info_key = "params"

    def __init__(self, env: gym.Env[Any, Any], space: ParamSpace, specs: Sequence[SampledSpec], where: str):
        super().__init__(env)
        bound = [bind(space, spec, f"{where}.{i}") for i, spec in enumerate(specs)]
        self._params = ParamSet(bound, space)
        self._enabled = True

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

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        if self._enabled:
            self.resample()
        info[self.info_key] = dict(self._params.values)
        return obs, info
