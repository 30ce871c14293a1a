"""The parameter vocabulary shared by the simulated tasks and the framework that varies them.

A task exposes *physics* parameters (what the robot is made of) and, when it renders, *visual*
parameters (what its camera sees) as named float arrays with one entry per element (a body, a joint,
a color channel, an axis). The names, what their elements are, the modes a randomization may apply
and the physically allowed values are declared once, here: an env implementing the protocols below
checks values against the same `ParamInfo` the randomization layer validates a YAML range against.

Physics (element names in brackets):
    body_mass [bodies]              mass; inertia scaled by the same factor so the body stays physical
    friction [geoms/links]          sliding (lateral) friction coefficient
    joint_damping [joints]          passive joint damping
    actuator_gain [actuators/joints] motor strength: force scales by the same factor
    gravity [x, y, z]               gravity vector components
    timestep [timestep]             physics integration step (s)
    frame_skip [frame_skip]         physics steps per action: with timestep, the control period

Visuals:
    rgba [<part>.r|g|b]             color channels in [0, 1] (drawn values are clipped), alpha untouched
    light_diffuse [<light>]         diffuse intensity of each light
    light_dir [<light>.x|y|z]       light direction (renderers normalize it)
    camera_pos [x, y, z]            camera position (an orbit camera's look-at point)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
MODES = ("scale", "abs", "add")


@dataclass(frozen=True)
class ParamInfo:
    """What one parameter means and which values are physical.

    `low`/`high`: the bounds of a physical value (None: unbounded), each inclusive or not;
    `modes`: how a randomization may apply a drawn number (scale, abs or add the nominal value);
    `clip`: drawn values are clipped into this range instead of being rejected (colors).
    """

    doc: str
    low: float | None = None
    low_inclusive: bool = True
    high: float | None = None
    high_inclusive: bool = True
    modes: tuple[str, ...] = MODES
    clip: tuple[float, float] | None = None

    def allowed(self) -> str:
        """The allowed values in words, e.g. `> 0` or `in [0, 1]`."""
        parts = []
        if self.low is not None:
            parts.append(f"{'>=' if self.low_inclusive else '>'} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<=' if self.high_inclusive else '<'} {self.high:g}")
        return " and ".join(parts) or "any finite value"

    def violations(self, values: FloatArray) -> NDArray[np.bool_]:
        """Per element: True where the value is not physical (NaN and inf included)."""
        v = np.asarray(values, dtype=np.float64)
        bad = ~np.isfinite(v)
        if self.low is not None:
            bad |= v < self.low if self.low_inclusive else v <= self.low
        if self.high is not None:
            bad |= v > self.high if self.high_inclusive else v >= self.high
        return bad

    def check(self, name: str, values: FloatArray) -> None:
        """Raise ValueError naming `name` when any value is not physical."""
        bad = self.violations(values)
        if bad.any():
            raise ValueError(f"{name}: values must be {self.allowed()}, got {np.asarray(values)[bad]}")


PHYSICS: dict[str, ParamInfo] = {
    "body_mass": ParamInfo("mass of each body; inertia scales with it", low=0.0, low_inclusive=False),
    "friction": ParamInfo("sliding friction coefficient of each geom or link", low=0.0),
    "joint_damping": ParamInfo("passive damping of each joint", low=0.0),
    # A motor with no strength at all leaves the policy nothing to act with: a typo, not a parameter.
    "actuator_gain": ParamInfo("strength of each motor", low=0.0, low_inclusive=False),
    "gravity": ParamInfo("gravity vector components (m/s^2)"),
    "timestep": ParamInfo("physics integration step (s)", low=0.0, low_inclusive=False),
    "frame_skip": ParamInfo("physics steps per action (rounded to an integer)", low=1.0),
}
"""The physics vocabulary: every task exposes a subset of these names."""

VISUALS: dict[str, ParamInfo] = {
    "rgba": ParamInfo("color channels of each visible part", clip=(0.0, 1.0)),
    "light_diffuse": ParamInfo("diffuse intensity of each light", low=0.0),
    "light_dir": ParamInfo("direction of each light", modes=("add", "abs")),
    "camera_pos": ParamInfo("camera position or look-at point (m)", modes=("add", "abs")),
}
"""The visual vocabulary of rendering tasks."""


@runtime_checkable
class PhysicsParams(Protocol):
    """An env that reads and writes named physics parameters itself, one float per element."""

    def param_names(self) -> tuple[str, ...]: ...

    def element_names(self, param: str) -> tuple[str, ...]: ...

    def get_param(self, param: str) -> FloatArray: ...

    def set_param(self, param: str, values: FloatArray) -> None: ...


@runtime_checkable
class VisualParams(Protocol):
    """An env that reads and writes named visual parameters itself, one float per element."""

    def visual_param_names(self) -> tuple[str, ...]: ...

    def visual_element_names(self, param: str) -> tuple[str, ...]: ...

    def get_visual_param(self, param: str) -> FloatArray: ...

    def set_visual_param(self, param: str, values: FloatArray) -> None: ...
