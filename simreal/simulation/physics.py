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


@dataclass(frozen=True)
class ModelParam:
    """One randomizable physics parameter of a MuJoCo model, defined once for every caller: its elements,
    how its values are read, which model fields a value is written to (and how), and which derived
    constants `mj_setConst` must then recompute. The Gymnasium path (`MujocoParams.set_param`) and the
    batched Warp worlds (`simreal.simulation.batched.worlds`, one row per world) both write through
    `write`. Its bounds and doc are `envs.params.PHYSICS[name]`."""

    name: str
    elements: Callable[[MujocoParams], tuple[str, ...]]
    read: Callable[[MujocoParams], np.ndarray]
    write: Callable[[MujocoParams, np.ndarray, Mapping[str, np.ndarray]], None] | None
    """None: not a model field (`frame_skip` is the env's), so there is no per-world form."""
    fields: tuple[str, ...] = ()
    derived: tuple[str, ...] = ()

    @property
    def info(self) -> ParamInfo:
        return PHYSICS[self.name]


def _write_mass(p: MujocoParams, values: np.ndarray, fields: Mapping[str, np.ndarray]) -> None:
    b = p.bodies
    ratio = _ratio(values, p.nominal_mass[b])
    fields["body_mass"][..., b] = values
    fields["body_inertia"][..., b, :] = p.nominal_inertia[b] * ratio[..., None]


def _write_damping(p: MujocoParams, values: np.ndarray, fields: Mapping[str, np.ndarray]) -> None:
    m = p.model
    for i, j in enumerate(p.joint_ids):
        adr, n = m.jnt_dofadr[j], p.ndof(j)
        nominal = p.nominal_damping[adr : adr + n]
        value = values[..., i : i + 1]
        base = nominal[0]
        fields["dof_damping"][..., adr : adr + n] = nominal * (value / base) if base != 0 else value


def _read_gain(p: MujocoParams) -> np.ndarray:
    m = p.model
    return (m.actuator_forcerange[:, 1] if p.force_limit else m.actuator_gainprm[:, 0]).astype(np.float64)


def _write_gain(p: MujocoParams, values: np.ndarray, fields: Mapping[str, np.ndarray]) -> None:
    if p.force_limit:
        fields["actuator_forcerange"][..., 0] = -values
        fields["actuator_forcerange"][..., 1] = values
        return
    ratio = _ratio(values, p.nominal_gain)
    fields["actuator_gainprm"][..., 0] = values
    fields["actuator_biasprm"][..., :3] = p.nominal_bias * ratio[..., None]


def _write_option(field_name: str) -> Callable[[MujocoParams, np.ndarray, Mapping[str, np.ndarray]], None]:
    def write(p: MujocoParams, values: np.ndarray, fields: Mapping[str, np.ndarray]) -> None:
        fields[field_name][...] = values

    return write


def _write_friction(p: MujocoParams, values: np.ndarray, fields: Mapping[str, np.ndarray]) -> None:
    fields["geom_friction"][..., 0] = values


class MujocoParams:
    """`PhysicsParams` over a Gymnasium `MujocoEnv`, relative to values cached at construction, through the
    `MODEL_PARAMS` definitions.

    Mass changes scale inertia by the same factor and then recompute MuJoCo's derived constants
    (`mj_setConst`, on a scratch `MjData` so the simulation state is untouched). `actuator_gain` scales
    each motor's gain (and its bias, so servos keep their shape) - or, for an env whose class sets
    `actuator_gain_means = "force_limit"` (force-limited servos such as `envs.kuka_mujoco`), its force limit.
    Names are checked once, where a YAML entry is bound to the env (`simreal.simulation.sampling.bind`,
    through `element_names`).
    """

    def __init__(self, env: Any) -> None:
        self.env: Any = env
        self.model: mujoco.MjModel = env.model
        m = self.model
        self._scratch = mujoco.MjData(m)
        # The world has no mass, and mocap bodies (markers moved by the env) are not dynamic.
        self.bodies = np.array([b for b in range(1, m.nbody) if m.body_mocapid[b] < 0], dtype=np.int64)
        self.body_names = tuple(_names(m, mujoco.mjtObj.mjOBJ_BODY, m.nbody, "body")[b] for b in self.bodies)
        self.joint_names = tuple(
            n for j, n in enumerate(_names(m, mujoco.mjtObj.mjOBJ_JOINT, m.njnt, "joint")) if self.ndof(j) > 0
        )
        joint = mujoco.mjtObj.mjOBJ_JOINT
        self.joint_ids: list[int] = [mujoco.mj_name2id(m, joint, n) for n in self.joint_names]
        self.nominal_inertia = m.body_inertia.copy()
        self.nominal_mass = m.body_mass.copy()
        self.nominal_damping = m.dof_damping.copy()
        self.force_limit = getattr(env, "actuator_gain_means", "gain") == "force_limit"
        self.nominal_gain = m.actuator_gainprm[:, 0].copy()
        self.nominal_bias = m.actuator_biasprm[:, :3].copy()
        self._elements = {name: p.elements(self) for name, p in MODEL_PARAMS.items()}

    def ndof(self, joint: int) -> int:
        nxt = self.model.jnt_dofadr[joint + 1] if joint + 1 < self.model.njnt else self.model.nv
        return int(nxt - self.model.jnt_dofadr[joint])

    def param_names(self) -> tuple[str, ...]:
        # An env that steps MuJoCo its own way (no `frame_skip`) has no control period to vary.
        return PARAMS if hasattr(self.env, "frame_skip") else tuple(p for p in PARAMS if p != "frame_skip")

    def element_names(self, param: str) -> tuple[str, ...]:
        _check_param(param, self.param_names())
        return self._elements[param]

    def get_param(self, param: str) -> np.ndarray:
        return MODEL_PARAMS[param].read(self)

    def set_param(self, param: str, values: np.ndarray) -> None:
        values = _check_values(param, values, len(self._elements[param]))
        if param == "frame_skip":
            self.env.frame_skip = int(round(values[0]))
            return
        self.write_fields(param, values, ModelFields(self.model))
        if MODEL_PARAMS[param].derived:
            mujoco.mj_setConst(self.model, self._scratch)

    def write_fields(self, param: str, values: np.ndarray, fields: Mapping[str, np.ndarray]) -> None:
        """Write `param`'s values (`(..., elements)`) into the model field arrays `fields` (each
        `(..., *field shape)`): the model's own (no leading axes), or one row per world of a batched model.
        Masses scale inertia too; MuJoCo's derived constants (`mj_setConst`) are the caller's."""
        write = MODEL_PARAMS[param].write
        if write is None:
            fields_of = ", ".join(p for p, d in MODEL_PARAMS.items() if d.write is not None)
            raise ValueError(f"{param}: not a model field (allowed: {fields_of})")
        write(self, values, fields)


MASS_DERIVED = ("body_subtreemass", "body_invweight0", "dof_invweight0", "tendon_invweight0", "actuator_acc0")
"""What `mj_setConst` recomputes from the masses."""

MODEL_PARAMS: dict[str, ModelParam] = {
    p.name: p
    for p in (
        ModelParam(
            "body_mass",
            lambda p: p.body_names,
            lambda p: p.model.body_mass[p.bodies].astype(np.float64),
            _write_mass,
            ("body_mass", "body_inertia"),
            MASS_DERIVED,
        ),
        ModelParam(
            "friction",
            lambda p: _names(p.model, mujoco.mjtObj.mjOBJ_GEOM, p.model.ngeom, "geom"),
            lambda p: p.model.geom_friction[:, 0].astype(np.float64),
            _write_friction,
            ("geom_friction",),
        ),
        ModelParam(
            "joint_damping",
            lambda p: p.joint_names,
            lambda p: p.model.dof_damping[p.model.jnt_dofadr[p.joint_ids]].astype(np.float64),
            _write_damping,
            ("dof_damping",),
        ),
        ModelParam(
            "actuator_gain",
            lambda p: _names(p.model, mujoco.mjtObj.mjOBJ_ACTUATOR, p.model.nu, "actuator"),
            _read_gain,
            _write_gain,
            ("actuator_gainprm", "actuator_biasprm", "actuator_forcerange"),
        ),
        ModelParam(
            "gravity",
            lambda p: ("x", "y", "z"),
            lambda p: p.model.opt.gravity.astype(np.float64),
            _write_option("opt.gravity"),
            ("opt.gravity",),
        ),
        ModelParam(
            "timestep",
            lambda p: ("timestep",),
            lambda p: np.array([p.model.opt.timestep], dtype=np.float64),
            _write_option("opt.timestep"),
            ("opt.timestep",),
        ),
        ModelParam(
            "frame_skip",
            lambda p: ("frame_skip",),
            lambda p: np.array([float(p.env.frame_skip)]),
            None,
        ),
    )
}
"""Every MuJoCo physics parameter, defined once (the names are `envs.params.PHYSICS`'s)."""
assert tuple(MODEL_PARAMS) == PARAMS, "every vocabulary name has one MuJoCo definition"


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
