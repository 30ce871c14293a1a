"""The calibrated task: the user's task with its `randomization:` and `source_effects:` brought to what was
identified, in one of two modes.

- `center` (DROPO's idea: a distribution, not a point): each identified range is re-centred on the
  identified value, `+-STDS` (4) standard deviations wide (at least `MIN_WIDTH` of the original half-width, so
  the sim still varies); a whole-numbered value identified exactly becomes fixed.
- `cover`: the original ranges are kept and widened just enough to hold the identified value and its
  `STDS` standard deviations (the original spread's robustness stays).

Unidentified axes (and fits pressed against the search's bounds) keep their original range in both
modes. Confounded axes are set at the fitted member
of their equivalence class (any member moves the sim alike; the data cannot prefer another) with the
minimum width: the combination they share is what the sim then reproduces.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from simreal.simulation.calibration.identify import AxisFit
from simreal.simulation.tasks import TaskSpec

Mode = Literal["center", "cover"]
STDS = 4.0
"""Standard deviations of the identified value each calibrated range holds on either side (default). The
fit's stds understate its error (about half the identified values lie within two of them of the truth on
random panel targets); 4 is the smallest width of 2, 3, 4 whose `center` ranges held the true value of
every identified quantity on the 22 pendulum and Reacher panel targets measured (84% at 2, 90% at 3), with
the held-out dynamics gap a little lower in both modes (BENCHMARKS.md, "How wide a calibrated range")."""
MIN_WIDTH = 0.1
"""The narrowest calibrated half-width, as a share of the original half-width (in the axis's coordinate)."""


def calibrated_range(fit: AxisFit, mode: Mode, stds: float = STDS) -> tuple[float, float]:
    """The range written for one axis: the value +- `stds` standard deviations (see the module)."""
    axis = fit.axis
    low, high = axis.axis.low, axis.axis.high
    if fit.at_edge or (fit.std is None and not fit.confounded_with):
        return low, high  # unidentified: the original range
    z = axis.to_z(fit.value)
    if fit.std is None:
        spread = 0.0
    elif axis.axis.log:
        spread = stds * fit.std / max(abs(fit.value), 1e-12)
    else:
        spread = stds * fit.std
    if axis.discrete and fit.identified:
        lo_v, hi_v = fit.value, fit.value
    else:
        half = max(spread, MIN_WIDTH * axis.half_z)
        if mode == "cover":
            half = max(spread, 0.0)
        lo_v, hi_v = axis.from_z(z - half), axis.from_z(z + half)
    if mode == "cover":
        lo_v, hi_v = min(low, lo_v), max(high, hi_v)
    if axis.axis.floor is not None:
        lo_v = max(lo_v, axis.axis.floor)
    if axis.axis.ceiling is not None:
        hi_v = min(hi_v, axis.axis.ceiling)
    if axis.axis.integer:
        lo_v, hi_v = float(math.floor(lo_v + 1e-9)), float(math.ceil(hi_v - 1e-9))
    return lo_v, hi_v


def calibrated_task(
    spec: TaskSpec,
    fits: list[AxisFit],
    mode: Mode,
    described: str,
    stds: float = STDS,
    name: str | None = None,
) -> dict[str, Any]:
    """The task file's data, with every fitted axis's range replaced (see the module docstring); named
    `name` (default `<Task>Calibrated`)."""
    data = spec.model_dump(mode="json", exclude_defaults=True)
    data["name"] = name or f"{spec.name}Calibrated"
    data["description"] = f"{spec.description + ' - ' if spec.description else ''}{described}"
    params = [dict(p) for p in data.get("randomization", {}).get("params", [])]
    effects = [dict(e) for e in data.get("source_effects", [])]
    for fit in fits:
        low, high = calibrated_range(fit, mode, stds)
        axis = fit.axis
        if axis.source == "physics":
            entry = params[axis.index]
            for key in ("low", "high", "mean", "std", "values", "value"):
                entry.pop(key, None)
            if low == high:
                entry.update(dist="fixed", value=low)
            elif spec.randomization.params[axis.index].dist == "choice":
                given = spec.randomization.params[axis.index].values or ()
                entry.update(values=sorted({*given, *(v for v in (low, high) if v.is_integer())}))
            elif spec.randomization.params[axis.index].dist == "normal":
                entry.update(mean=(low + high) / 2, std=(high - low) / 4, low=low, high=high)
            else:
                entry.update(low=low, high=high)
        else:
            assert axis.arg is not None
            value: Any = [low, high] if low != high else low
            if axis.axis.integer:
                value = [int(low), int(high)] if low != high else int(low)
            effects[axis.index][axis.arg] = value
    if params:
        data["randomization"]["params"] = params
    if effects:
        data["source_effects"] = effects
    return data
