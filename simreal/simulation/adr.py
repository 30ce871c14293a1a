"""Automatic domain randomization (OpenAI et al. 2019): each range starts small and grows as the policy
copes with its edges.

`randomization.adr` turns every `uniform` / `log_uniform` entry of `randomization.params` into an ADR
dimension whose declared `[low, high]` is the most it may ever reach (checked for physical values like
any range, at construction). A dimension starts at `initial_width` of that span around its nominal point
(1 for `scale`, 0 for `add`, the middle for `abs`). In a share `boundary_prob` of the episodes one
dimension is pinned to one of its current edges (the others are drawn inside their current ranges);
that episode's return goes into the edge's buffer. When a buffer holds `episodes` returns, their mean
decides: above `expand_above`, the edge moves outward by `step` of the span; below `shrink_below`, inward
(never inside the initial range); then the buffer is emptied. The ranges are logged to TensorBoard
(`adr/<label>/low|high`) and saved with the pretrained policy.

One `AdrState` is shared by every env of a training run's process, so its n_envs copies grow one range;
each env keeps its own episode's pinned edge and return (`RandomizeDynamics`) and files it at its end.

YAML::

    randomization:
      params:
        - {param: body_mass, names: [pole], dist: uniform, low: 0.3, high: 4.0}   # ADR may reach [0.3, 4]
      adr: {expand_above: 900, shrink_below: 500, initial_width: 0.1, step: 0.05, episodes: 10}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from simreal.schema import Spec


class AdrSpec(Spec):
    """The ADR schedule: thresholds in return units, the boundary share, the start and the step."""

    expand_above: float
    """Mean return of an edge's episodes at or above which the edge moves outward."""
    shrink_below: float
    """Mean return below which the edge moves inward (never inside its initial range)."""
    boundary_prob: float = Field(default=0.4, gt=0, le=1)
    """Share of episodes that pin one dimension to one of its current edges."""
    initial_width: float = Field(default=0.1, ge=0, le=1)
    """Starting width of each range, as a share of its declared span, around nominal."""
    step: float = Field(default=0.05, gt=0, le=1)
    """How far an edge moves per decision, as a share of its declared span."""
    episodes: int = Field(default=10, ge=1)
    """Pinned episodes an edge collects before their mean return decides."""

    @model_validator(mode="after")
    def _order(self) -> AdrSpec:
        if self.shrink_below > self.expand_above:
            raise ValueError(
                f"shrink_below: {self.shrink_below:g} is above expand_above {self.expand_above:g} "
                "(allowed: shrink_below <= expand_above)"
            )
        return self


@dataclass
class Dimension:
    """One ADR dimension: its most and its current range, and each edge's buffer of returns."""

    label: str
    bounds: tuple[float, float]
    low: float
    high: float
    log: bool = False
    buffers: dict[str, list[float]] = field(default_factory=lambda: {"low": [], "high": []})
    start: tuple[float, float] | None = None  # the initial range: the least an edge may shrink back to

    def edge(self, side: str) -> float:
        return self.low if side == "low" else self.high

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        if self.log:
            return np.exp(rng.uniform(np.log(self.low), np.log(self.high), size=size))
        return rng.uniform(self.low, self.high, size=size)

    def move(self, side: str, outward: bool, step: float) -> None:
        """Move one edge by `step` of the span: outward never past the declared bounds, inward never past
        where the range started (DeXtreme's ADR does the same: a failing edge gives back what it gained,
        no more - else the still untrained policy of the first updates shrinks every range to a point)."""
        lo, hi = self.bounds
        start_low, start_high = self.start if self.start is not None else (self.low, self.high)
        delta = step * (hi - lo)
        if side == "low":
            self.low = float(max(lo, self.low - delta) if outward else min(start_low, self.low + delta))
        else:
            self.high = float(min(hi, self.high + delta) if outward else max(start_high, self.high - delta))


def nominal_point(mode: str, low: float, high: float) -> float:
    """Where a range of this mode leaves the parameter at its nominal value (clipped into the bounds)."""
    point = {"scale": 1.0, "add": 0.0}.get(mode, 0.5 * (low + high))
    return float(np.clip(point, low, high))


@dataclass
class AdrState:
    """Every dimension's ranges and the episode in progress: which edge (if any) it pins."""

    spec: AdrSpec
    dims: list[Dimension]
    pinned: tuple[int, str] | None = None
    episode_return: float = 0.0
    updates: int = 0
    frozen: bool = False  # draw inside the current ranges only: no pinned edges, no updates

    @classmethod
    def for_entries(cls, spec: AdrSpec, entries: Any) -> AdrState:
        """The state for a randomization's `params` (their uniform and log-uniform entries)."""
        rows = []
        for i, entry in enumerate(entries):
            if entry.dist in ("uniform", "log_uniform"):
                names = "+".join(entry.names) if entry.names else "all"
                label = f"{i}.{entry.param.rpartition(':')[2]}/{names}"
                rows.append(
                    (label, entry.mode, float(entry.low), float(entry.high), entry.dist == "log_uniform")
                )
        return cls.start(spec, rows)

    def dimension_of(self, entries: Any) -> dict[int, int]:
        """Entry index -> dimension index, for the entries ADR drives."""
        adaptive = [i for i, e in enumerate(entries) if e.dist in ("uniform", "log_uniform")]
        return {entry: dim for dim, entry in enumerate(adaptive)}

    def load(self, saved: dict[str, Any]) -> None:
        """Ranges and buffers from `as_dict` (a resumed pretraining goes on where it was)."""
        for dim in self.dims:
            if dim.label in saved.get("ranges", {}):
                dim.low, dim.high = saved["ranges"][dim.label]
                dim.buffers = {
                    k: list(v) for k, v in saved.get("buffers", {}).get(dim.label, dim.buffers).items()
                }

    @classmethod
    def frozen_at(cls, spec: AdrSpec, entries: Any, saved: dict[str, Any]) -> AdrState:
        """The ranges a pretraining reached (`as_dict`), fixed: e.g. to distill a policy where it learned."""
        state = cls.for_entries(spec, entries)
        state.load(saved)
        state.frozen = True
        return state

    @classmethod
    def start(cls, spec: AdrSpec, entries: list[tuple[str, str, float, float, bool]]) -> AdrState:
        """`entries`: (label, mode, low, high, log-uniform) of each ADR dimension, in YAML order."""
        dims = []
        for label, mode, low, high, log in entries:
            center = nominal_point(mode, low, high)
            half = 0.5 * spec.initial_width * (high - low)
            start = (max(low, center - half), min(high, center + half))
            dims.append(Dimension(label, (low, high), *start, log, start=start))
        return cls(spec, dims)

    def begin_episode(self, rng: np.random.Generator) -> None:
        """Decide whether this episode pins an edge, and which."""
        self.episode_return = 0.0
        self.pinned = None
        if self.dims and not self.frozen and rng.random() < self.spec.boundary_prob:
            self.pinned = (int(rng.integers(len(self.dims))), "low" if rng.random() < 0.5 else "high")

    def draw(self, index: int, rng: np.random.Generator, size: int) -> np.ndarray:
        """Values of dimension `index` for this episode: its pinned edge, or a draw in its range."""
        if self.pinned is not None and self.pinned[0] == index:
            return np.full(size, self.dims[index].edge(self.pinned[1]))
        return self.dims[index].sample(rng, size)

    def end_episode(self) -> None:
        """File the finished episode's return under its edge; update the edge when its buffer is full."""
        if self.pinned is None:
            return
        index, side = self.pinned
        dim = self.dims[index]
        buffer = dim.buffers[side]
        buffer.append(self.episode_return)
        if len(buffer) >= self.spec.episodes:
            mean = float(np.mean(buffer))
            if mean >= self.spec.expand_above:
                dim.move(side, outward=True, step=self.spec.step)
                self.updates += 1
            elif mean < self.spec.shrink_below:
                dim.move(side, outward=False, step=self.spec.step)
                self.updates += 1
            buffer.clear()
        self.pinned = None

    def ranges(self) -> dict[str, list[float]]:
        """Current `[low, high]` of every dimension, by label."""
        return {d.label: [d.low, d.high] for d in self.dims}

    def as_dict(self) -> dict[str, Any]:
        return {
            "ranges": self.ranges(),
            "bounds": {d.label: list(d.bounds) for d in self.dims},
            "buffers": {d.label: d.buffers for d in self.dims},
        }
