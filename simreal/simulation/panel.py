"""A panel of random targets drawn from a task: for choosing defaults on targets nobody tuned for.

Every randomized physics parameter of the task (each entry of `randomization.params` with a range) and
every effect argument the source draws from a `[low, high]` range becomes an axis. For each target and
axis the value lies inside the pretraining range, at its edge, or beyond it by up to a factor `beyond`
(`MIX`: the stated odds of each); multiplicative ranges (`mode: scale` with a positive low end) are
drawn and extended in log space, additive ones linearly, integer arguments (delays) rounded, and values
are kept inside what the parameter allows. Each target is an ordinary task-file target, so the panel is
a task file that `simreal envs --task` lists and any experiment can name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from simreal.simulation.axes import Axis, effect_axes, physics_axes
from simreal.simulation.tasks import TaskSpec

MIX = {"inside": 0.5, "edge": 0.2, "beyond": 0.3}
"""The odds of an axis's value lying inside its pretraining range, at an edge, or beyond it (with
`beyond == 1` there is no room beyond: the odds of inside and edge are rescaled)."""


@dataclass(frozen=True)
class Shift:
    """One axis of a drawn target: its value, where it lies against the pretraining range, and how far
    outside (`outside`: 0 inside or at an edge; else the distance past the nearer edge as a fraction of
    the furthest a panel may go, so 1 = the full `beyond` factor)."""

    axis: str
    value: float
    where: str
    low: float
    high: float
    outside: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "axis": self.axis,
            "value": self.value,
            "where": self.where,
            "range": [self.low, self.high],
            "outside": self.outside,
        }


def draw_panel(
    spec: TaskSpec, n: int, seed: int, beyond: float, stream: tuple[int, ...] = ()
) -> dict[str, tuple[dict[str, Any], list[Shift]]]:
    """`n` targets of `spec` (`p00`, `p01`, ...): each a task-file target mapping and its shifts. The same
    task, `n`, `seed`, `beyond` and `stream` give the same panel (another `stream`: independent draws, as
    meta-learning's training tasks are of a panel's held-out targets)."""
    rng = np.random.default_rng([seed, 20_27, *stream])
    physics, effects = physics_axes(spec), effect_axes(spec)
    if not physics and not effects:
        raise ValueError(f"{spec.source}: the task randomizes no range a panel could draw from")
    width = len(str(n - 1))
    panel = {}
    for t in range(n):
        shifts: list[Shift] = []
        entries = []
        for entry, axis in physics:
            shift = _draw(axis, rng, beyond)
            shifts.append(shift)
            item: dict[str, Any] = {"param": entry.param, "value": shift.value, "mode": entry.mode}
            if entry.names:
                item["names"] = list(entry.names)
            entries.append(item)
        drawn_effects = []
        for source, fixed, axes in effects:
            args = dict(fixed)
            for arg, axis in axes:
                shift = _draw(axis, rng, beyond)
                shifts.append(shift)
                args[arg] = int(shift.value) if axis.integer else shift.value
            drawn_effects.append({"type": source, **args})
        described = ", ".join(f"{s.axis} {s.value:.3g} ({s.where})" for s in shifts)
        target = {
            "description": f"panel target {t} of seed {seed}: {described}",
            "physics": entries,
            "effects": drawn_effects,
            "extrapolation": any(s.where == "beyond" for s in shifts),
        }
        panel[f"p{t:0{width}d}"] = (target, shifts)
    return panel


def _draw(axis: Axis, rng: np.random.Generator, beyond: float) -> Shift:
    odds = dict(MIX) if beyond > 1 else {"inside": MIX["inside"], "edge": MIX["edge"]}
    total = sum(odds.values())
    where = str(rng.choice(list(odds), p=[v / total for v in odds.values()]))
    low, high = axis.low, axis.high
    outside = 0.0
    if where == "inside":
        value = math.exp(rng.uniform(math.log(low), math.log(high))) if axis.log else rng.uniform(low, high)
    elif where == "edge":
        value = low if rng.random() < 0.5 else high
    else:
        u = rng.uniform(0.05, 1.0)  # how far toward the furthest a panel may go
        above = rng.random() < 0.5
        if axis.log:
            factor = beyond**u
            value = high * factor if above else low / factor
        else:
            span = (high - low) * (beyond - 1.0) * u
            value = high + span if above else low - span
        outside = float(u)
    if axis.integer:
        value = float(round(value))
        if where == "beyond" and low <= value <= high:  # rounding brought it back: one step past the edge
            value = high + 1 if value >= (low + high) / 2 else low - 1
    if axis.floor is not None and value < axis.floor:
        value = axis.floor
    if axis.ceiling is not None and value > axis.ceiling:
        value = axis.ceiling
    if where == "beyond" and low <= value <= high:  # clipped back to the range by what is allowed
        where, outside = "edge", 0.0
    return Shift(axis.name, float(value), where, low, high, outside)
