"""Named physics parameters of a simulated env, read and written as per-element arrays.

Two back-ends share one small protocol (`PhysicsParams`):
- `MujocoParams` for any Gymnasium MuJoCo env exposing `unwrapped.model` (Gymnasium's own included);
- envs that implement the protocol themselves (the project's PyBullet tasks do).

Parameters (element names in brackets):
    body_mass [bodies]      mass; inertia scaled by the same factor so the body stays physical
    friction [geoms/links]  sliding (lateral) friction coefficient
    joint_damping [joints]  passive joint damping
    actuator_gain [actuators/joints]  motor strength: force scales by the same factor
    gravity [x, y, z]       gravity vector components
    timestep [timestep]     physics integration step (s)
    frame_skip [frame_skip] physics steps per action: with timestep, the control period
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, get_args, runtime_checkable

import gymnasium as gym
import mujoco
import numpy as np

ParamName = Literal[
    "body_mass", "friction", "joint_damping", "actuator_gain", "gravity", "timestep", "frame_skip"
]
PARAMS: tuple[str, ...] = get_args(ParamName)

# Smallest physical value per parameter and whether it may be reached (friction 0 is physical, mass 0 is not).
LOWER_BOUNDS: dict[str, tuple[float, bool]] = {
    "body_mass": (0.0, False),
    "friction": (0.0, True),
    "joint_damping": (0.0, True),
    "actuator_gain": (0.0, False),
    "timestep": (0.0, False),
    "frame_skip": (1.0, True),
}


@runtime_checkable
class PhysicsParams(Protocol):
    """Read and write named physics parameters, one float per element."""

    def param_names(self) -> tuple[str, ...]: ...

    def element_names(self, param: str) -> tuple[str, ...]: ...

    def get_param(self, param: str) -> np.ndarray: ...

    def set_param(self, param: str, values: np.ndarray) -> None: ...


def _names(model: mujoco.MjModel, obj: mujoco.mjtObj, count: int, prefix: str) -> tuple[str, ...]:
    return tuple(mujoco.mj_id2name(model, obj, i) or f"{prefix}{i}" for i in range(count))


class MujocoParams:
    """`PhysicsParams` over a Gymnasium `MujocoEnv`, relative to values cached at construction.

    Mass changes scale inertia by the same factor and then recompute MuJoCo's derived constants
    (`mj_setConst`, on a scratch `MjData` so the simulation state is untouched).
    """

    def __init__(self, env: Any) -> None:
        self._env = env
        self.model: mujoco.MjModel = env.model
        m = self.model
        self._scratch = mujoco.MjData(m)
        bodies = _names(m, mujoco.mjtObj.mjOBJ_BODY, m.nbody, "body")[1:]  # world has no mass
        joints = tuple(
            n
            for j, n in enumerate(_names(m, mujoco.mjtObj.mjOBJ_JOINT, m.njnt, "joint"))
            if self._ndof(j) > 0
        )
        self._elements: dict[str, tuple[str, ...]] = {
            "body_mass": bodies,
            "friction": _names(m, mujoco.mjtObj.mjOBJ_GEOM, m.ngeom, "geom"),
            "joint_damping": joints,
            "actuator_gain": _names(m, mujoco.mjtObj.mjOBJ_ACTUATOR, m.nu, "actuator"),
            "gravity": ("x", "y", "z"),
            "timestep": ("timestep",),
            "frame_skip": ("frame_skip",),
        }
        self._joint_ids = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, n) for n in joints]
        self._nominal_inertia = m.body_inertia.copy()
        self._nominal_mass = m.body_mass.copy()
        self._nominal_damping = m.dof_damping.copy()
        self._nominal_gain = m.actuator_gainprm[:, 0].copy()
        self._nominal_bias = m.actuator_biasprm[:, :3].copy()

    def _ndof(self, joint: int) -> int:
        nxt = self.model.jnt_dofadr[joint + 1] if joint + 1 < self.model.njnt else self.model.nv
        return int(nxt - self.model.jnt_dofadr[joint])

    def param_names(self) -> tuple[str, ...]:
        return PARAMS

    def element_names(self, param: str) -> tuple[str, ...]:
        _check_param(param, PARAMS)
        return self._elements[param]

    def get_param(self, param: str) -> np.ndarray:
        m = self.model
        _check_param(param, PARAMS)
        if param == "body_mass":
            return m.body_mass[1:].astype(np.float64)
        if param == "friction":
            return m.geom_friction[:, 0].astype(np.float64)
        if param == "joint_damping":
            return np.array([m.dof_damping[m.jnt_dofadr[j]] for j in self._joint_ids], dtype=np.float64)
        if param == "actuator_gain":
            return m.actuator_gainprm[:, 0].astype(np.float64)
        if param == "gravity":
            return m.opt.gravity.astype(np.float64)
        if param == "timestep":
            return np.array([m.opt.timestep], dtype=np.float64)
        return np.array([float(self._env.frame_skip)])

    def set_param(self, param: str, values: np.ndarray) -> None:
        m = self.model
        values = _check_values(param, values, len(self.element_names(param)))
        if param == "body_mass":
            ratio = _ratio(values, self._nominal_mass[1:])
            m.body_mass[1:] = values
            m.body_inertia[1:] = self._nominal_inertia[1:] * ratio[:, None]
            mujoco.mj_setConst(m, self._scratch)
        elif param == "friction":
            m.geom_friction[:, 0] = values
        elif param == "joint_damping":
            for j, value in zip(self._joint_ids, values, strict=True):
                adr, n = m.jnt_dofadr[j], self._ndof(j)
                nominal = self._nominal_damping[adr : adr + n]
                base = nominal[0]
                m.dof_damping[adr : adr + n] = nominal * (value / base) if base != 0 else value
        elif param == "actuator_gain":
            ratio = _ratio(values, self._nominal_gain)
            m.actuator_gainprm[:, 0] = values
            m.actuator_biasprm[:, :3] = self._nominal_bias * ratio[:, None]
        elif param == "gravity":
            m.opt.gravity[:] = values
        elif param == "timestep":
            m.opt.timestep = float(values[0])
        else:
            self._env.frame_skip = int(round(values[0]))


def _ratio(values: np.ndarray, nominal: np.ndarray) -> np.ndarray:
    """Per-element new/nominal factor; 1 where the nominal value is zero."""
    safe = np.where(nominal != 0, nominal, 1.0)
    return np.where(nominal != 0, values / safe, 1.0)


def _check_param(param: str, allowed: tuple[str, ...]) -> None:
    if param not in allowed:
        raise ValueError(f"param: unknown physics parameter {param!r} (allowed: {', '.join(allowed)})")


def _check_values(param: str, values: np.ndarray, n: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"{param}: expected {n} values, got shape {arr.shape}")
    return arr


def physics_of(env: gym.Env) -> PhysicsParams:
    """The parameter interface of `env`: MuJoCo through its model, others through their own methods."""
    base = env.unwrapped
    if isinstance(getattr(base, "model", None), mujoco.MjModel):
        return MujocoParams(base)
    if isinstance(base, PhysicsParams):
        return base
    raise ValueError(
        f"env {env.spec.id if env.spec else type(base).__name__}: no physics parameters to randomize "
        "(allowed: Gymnasium MuJoCo envs exposing unwrapped.model, or envs implementing "
        "param_names/element_names/get_param/set_param)"
    )
