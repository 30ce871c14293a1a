"""The ranges a task draws from, as axes: every randomized physics entry with a range, and every effect
argument the source draws from a `[low, high]` pair. Random-target panels draw along them
(`simreal.simulation.panel`); calibration fits along them (`simreal.simulation.calibration`).

`log` axes (a `mode: scale` factor with a positive low end) are treated in log space; `integer` ones
(delays) take whole values; `floor`/`ceiling` are what the parameter allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from envs.params import PHYSICS
from simreal.simulation.effects import EFFECTS
from simreal.simulation.effects.params import Rule
from simreal.simulation.randomization import ParamSpec
from simreal.simulation.references import is_reference, load_attr
from simreal.simulation.tasks import TaskSpec


@dataclass(frozen=True)
class Axis:
    """One range a task draws from: a randomized physics entry or a randomized effect argument."""

    name: str
    low: float
    high: float
    log: bool
    integer: bool
    floor: float | None  # what the parameter allows
    ceiling: float | None


def physics_axes(spec: TaskSpec) -> list[tuple[ParamSpec, Axis]]:
    """The task's randomized physics entries with a range (uniform, log_uniform, normal), each an axis
    named `param[/names]`; fixed and `choice` entries are not ranges."""
    out = []
    for entry in spec.randomization.params:
        if entry.dist not in ("uniform", "log_uniform", "normal") or entry.low is None or entry.high is None:
            continue
        if entry.low == entry.high:
            continue
        info = None if is_reference(entry.param) else PHYSICS.get(entry.param)
        floor = ceiling = None
        if entry.mode == "scale":  # a factor of the nominal value: kept positive
            floor = 1e-3
        elif entry.mode == "abs" and info is not None:  # the value itself: what is physical
            floor, ceiling = info.low, info.high
        log = entry.mode == "scale" and entry.low > 0
        name = entry.param + (f"/{','.join(entry.names)}" if entry.names else "")
        out.append((entry, Axis(name, float(entry.low), float(entry.high), log, False, floor, ceiling)))
    return out


def effect_axes(spec: TaskSpec) -> list[tuple[str, dict[str, Any], list[tuple[str, Axis]]]]:
    """Per source effect, in order: its type, its fixed arguments, and an axis (`type.arg`) for every
    argument drawn from a `[low, high]` pair."""
    out = []
    for effect in spec.source_effects:
        cls = EFFECTS.get(effect.type)
        if cls is None and is_reference(effect.type):
            cls = load_attr(effect.type, f"{spec.source}: source_effects")
        rules: dict[str, Rule] = dict(getattr(cls, "params", {}) or {})
        fixed: dict[str, Any] = {}
        axes = []
        for arg, value in effect.args.items():
            if isinstance(value, list | tuple) and len(value) == 2 and value[0] != value[1] and arg in rules:
                rule = rules[arg]
                floor = rule.ge if rule.ge is not None else rule.gt
                ceiling = rule.le if rule.le is not None else rule.lt
                low, high = float(value[0]), float(value[1])
                axis = Axis(f"{effect.type}.{arg}", low, high, False, rule.integer, floor, ceiling)
                axes.append((arg, axis))
            else:
                fixed[arg] = value
        out.append((effect.type, fixed, axes))
    return out
