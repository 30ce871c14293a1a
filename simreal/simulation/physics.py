"""The physics of an env as named per-element arrays: MuJoCo models, self-describing envs, custom parameters.

Three sources feed one `PhysicsSpace` (the `ParamSpace` that randomization binds YAML entries to):
- `MujocoParams` for any Gymnasium MuJoCo env exposing `unwrapped.model` (Gymnasium's own included);
- envs that implement `envs.params.PhysicsParams` themselves (the project's PyBullet tasks do);
- `CustomParam`s named in YAML as `param: my_pkg.params:cable_stiffness`: get/set functions over
  `env.unwrapped` with declared bounds, for anything the vocabulary does not cover.

The vocabulary (names, elements, physical bounds) is `envs.params.PHYSICS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from envs.params import MODES, PHYSICS, ParamInfo, PhysicsParams
from simreal.schema import ConfigError
from simreal.simulation.references import load_attr

PARAMS: tuple[str, ...] = tuple(PHYSICS)


def _names(model: mujoco.MjModel, obj: mujoco.mjtObj, count: int, prefix: str) -> tuple[str, ...]:
    return tuple(mujoco.mj_id2name(model, obj, i) or f"{prefix}{i}" for i in range(count))


class MujocoParams:
    """`PhysicsParams` over a Gymnasium `MujocoEnv`, relative to values cached at construction.

    Mass changes scale inertia by the same factor and then recompute MuJoCo's derived constants
    (`mj_setConst`, on a scratch `MjData` so the simulation state is untouched). `actuator_gain` scales
    each motor's gain (and its bias, so servos keep their shape) - or, for an env whose class sets
    `actuator_gain_means = "force_limit"` (force-limited servos such as `envs.kuka_mujoco`), its force limit.
    """

    def __init__(self, env: Any) -> None:
        self._env = env
        self.model: mujoco.MjModel = env.model
        m = self.model
        self._scratch = mujoco.MjData(m)
        # The world has no mass, and mocap bodies (markers moved by the env) are not dynamic.
        self._bodies = np.array([b for b in range(1, m.nbody) if m.body_mocapid[b] < 0], dtype=np.int64)
        bodies = tuple(_names(m, mujoco.mjtObj.mjOBJ_BODY, m.nbody, "body")[b] for b in self._bodies)
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
        self._force_limit = getattr(env, "actuator_gain_means", "gain") == "force_limit"
        self._nominal_gain = m.actuator_gainprm[:, 0].copy()
        self._nominal_bias = m.actuator_biasprm[:, :3].copy()

    def _ndof(self, joint: int) -> int:
        nxt = self.model.jnt_dofadr[joint + 1] if joint + 1 < self.model.njnt else self.model.nv
        return int(nxt - self.model.jnt_dofadr[joint])

    def param_names(self) -> tuple[str, ...]:
        # An env that steps MuJoCo its own way (no `frame_skip`) has no control period to vary.
        return PARAMS if hasattr(self._env, "frame_skip") else tuple(p for p in PARAMS if p != "frame_skip")

    def element_names(self, param: str) -> tuple[str, ...]:
        _check_param(param, self.param_names())
        return self._elements[param]

    def get_param(self, param: str) -> np.ndarray:
        m = self.model
        _check_param(param, self.param_names())
        if param == "body_mass":
            return m.body_mass[self._bodies].astype(np.float64)
        if param == "friction":
            return m.geom_friction[:, 0].astype(np.float64)
        if param == "joint_damping":
            return np.array([m.dof_damping[m.jnt_dofadr[j]] for j in self._joint_ids], dtype=np.float64)
        if param == "actuator_gain":
            if self._force_limit:
                return m.actuator_forcerange[:, 1].astype(np.float64)
            return m.actuator_gainprm[:, 0].astype(np.float64)
        if param == "gravity":
            return m.opt.gravity.astype(np.float64)
        if param == "timestep":
            return np.array([m.opt.timestep], dtype=np.float64)
        return np.array([float(self._env.frame_skip)])

    def set_param(self, param: str, values: np.ndarray) -> None:
        m = self.model
        values = _check_values(param, values, len(self.element_names(param)))
        if param == "timestep":
            m.opt.timestep = float(values[0])
        elif param == "frame_skip":
            self._env.frame_skip = int(round(values[0]))
        else:
            self.write_fields(param, values, ModelFields(m))
            if param == "body_mass":
                mujoco.mj_setConst(m, self._scratch)

    def write_fields(self, param: str, values: np.ndarray, fields: Mapping[str, np.ndarray]) -> None:
        """Write `param`'s values (`(..., elements)`) into the model field arrays `fields` (each
        `(..., *field shape)`): the model's own (no leading axes), or one row per world of a batched model.
        Masses scale inertia too; MuJoCo's derived constants (`mj_setConst`) are the caller's."""
        if param == "body_mass":
            b = self._bodies
            ratio = _ratio(values, self._nominal_mass[b])
            fields["body_mass"][..., b] = values
            fields["body_inertia"][..., b, :] = self._nominal_inertia[b] * ratio[..., None]
        elif param == "friction":
            fields["geom_friction"][..., 0] = values
        elif param == "joint_damping":
            m = self.model
            for i, j in enumerate(self._joint_ids):
                adr, n = m.jnt_dofadr[j], self._ndof(j)
                nominal = self._nominal_damping[adr : adr + n]
                value = values[..., i : i + 1]
                base = nominal[0]
                fields["dof_damping"][..., adr : adr + n] = nominal * (value / base) if base != 0 else value
        elif param == "actuator_gain" and self._force_limit:
            fields["actuator_forcerange"][..., 0] = -values
            fields["actuator_forcerange"][..., 1] = values
        elif param == "actuator_gain":
            ratio = _ratio(values, self._nominal_gain)
            fields["actuator_gainprm"][..., 0] = values
            fields["actuator_biasprm"][..., :3] = self._nominal_bias * ratio[..., None]
        elif param in ("gravity", "timestep"):
            fields[f"opt.{param}"][...] = values
        else:
            fields_of = ", ".join(p for p in PARAMS if p != "frame_skip")
            raise ValueError(f"{param}: not a model field (allowed: {fields_of})")


class ModelFields(Mapping[str, np.ndarray]):
    """A MuJoCo model's arrays by field name (`opt.gravity` for an option), for `write_fields`."""

    def __init__(self, model: mujoco.MjModel) -> None:
        self._model = model

    def __getitem__(self, name: str) -> np.ndarray:
        if name.startswith("opt."):
            return np.asarray(getattr(self._model.opt, name[4:]))
        return np.asarray(getattr(self._model, name))

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


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


@dataclass(frozen=True)
class CustomParam:
    """A physics parameter the vocabulary does not have, defined by the user over `env.unwrapped`.

    `get(env) -> values` and `set(env, values)` read and write one float per element; `elements` names
    them (a tuple, or a function of the env). `low`/`high` bound the physical values exactly as the
    built-in parameters are bounded, so a YAML range that could leave them is refused before any episode.

    Example (in `my_pkg/params.py`, used in YAML as `param: my_pkg.params:cable_stiffness`)::

        cable_stiffness = CustomParam(
            get=lambda env: np.array([env.stiffness]),
            set=lambda env, v: setattr(env, "stiffness", float(v[0])),
            elements=("cable",),
            low=0.0, low_inclusive=False,
        )
    """

    get: Callable[[Any], Any]
    set: Callable[[Any, np.ndarray], None]
    elements: tuple[str, ...] | Callable[[Any], Sequence[str]] = ("value",)
    doc: str = ""
    low: float | None = None
    low_inclusive: bool = True
    high: float | None = None
    high_inclusive: bool = True
    modes: tuple[str, ...] = field(default=MODES)

    @property
    def info(self) -> ParamInfo:
        return ParamInfo(self.doc, self.low, self.low_inclusive, self.high, self.high_inclusive, self.modes)

    def element_names(self, env: Any) -> tuple[str, ...]:
        return tuple(self.elements(env) if callable(self.elements) else self.elements)


def custom_param(ref: str, where: str) -> CustomParam:
    """The `CustomParam` that `module:attr` names; anything else is a one-line ConfigError."""
    obj = load_attr(ref, where)
    if not isinstance(obj, CustomParam):
        raise ConfigError(
            f"{where}: {ref} is a {type(obj).__name__}, not a simreal CustomParam "
            "(allowed: CustomParam(get=..., set=..., elements=..., low=..., high=...))"
        )
    return obj


def _backend(env: gym.Env[Any, Any]) -> PhysicsParams | None:
    base = env.unwrapped
    if isinstance(getattr(base, "model", None), mujoco.MjModel):
        return MujocoParams(base)
    if isinstance(base, PhysicsParams):
        return base
    return None


class PhysicsSpace:
    """Every physics parameter of one env: the built-in back-end's and the custom ones named in YAML."""

    family = "physics"

    def __init__(self, env: gym.Env[Any, Any], custom: Sequence[str] = ()) -> None:
        self._base = env.unwrapped
        self.backend = _backend(env)
        self._custom = {ref: custom_param(ref, f"param {ref}") for ref in dict.fromkeys(custom)}

    def names(self) -> tuple[str, ...]:
        builtin = self.backend.param_names() if self.backend is not None else ()
        return (*builtin, *self._custom)

    def info(self, param: str) -> ParamInfo:
        return self._custom[param].info if param in self._custom else PHYSICS[param]

    def elements(self, param: str) -> tuple[str, ...]:
        if param in self._custom:
            return self._custom[param].element_names(self._base)
        return self._require().element_names(param)

    def get(self, param: str) -> np.ndarray:
        if param in self._custom:
            return np.asarray(self._custom[param].get(self._base), dtype=np.float64).reshape(-1)
        return self._require().get_param(param)

    def set(self, param: str, values: np.ndarray) -> None:
        if param in self._custom:
            self._custom[param].set(self._base, np.asarray(values, dtype=np.float64))
        else:
            self._require().set_param(param, values)

    @property
    def hint(self) -> str:
        """Why built-in names are missing, for error messages."""
        if self.backend is not None:
            return ""
        return (
            f"; {type(self._base).__name__} has no built-in physics parameters - a MuJoCo model or "
            "param_names/element_names/get_param/set_param - so name CustomParams as module:attr"
        )

    def _require(self) -> PhysicsParams:
        if self.backend is None:
            raise ValueError(
                f"env {type(self._base).__name__}: no built-in physics parameters "
                "(allowed: Gymnasium MuJoCo envs exposing unwrapped.model, envs implementing "
                "param_names/element_names/get_param/set_param, or module:attr CustomParams)"
            )
        return self.backend


def physics_of(env: gym.Env[Any, Any]) -> PhysicsParams:
    """The built-in parameter interface of `env`: MuJoCo through its model, others through their methods."""
    backend = _backend(env)
    if backend is None:
        PhysicsSpace(env)._require()
    assert backend is not None
    return backend
