"""Per-world physics: each world of a batched model draws its own parameters at its own resets.

The draw is the Gymnasium path's own: the YAML entries are bound (selectors, modes, physical bounds)
against a host Gymnasium env of the task, and each world's values come from the same `ParamSet` with
that world's generator - so validation and the `info["dynamics"]` records are identical. The host
model then holds the world's physics (masses with their inertia and MuJoCo's derived constants from
`mj_setConst`), and the model fields that parameter touches are copied into that world's row of the
batched model (`put_model(..., batch_sizes=...)`; gravity and timestep as per-world option arrays).

`frame_skip` (the number of substeps, one for all worlds in a batched step) and `CustomParam`s
(functions of a Python env object) have no per-world form and are refused at construction.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from simreal.schema import ConfigError
from simreal.simulation.randomization import RandomizationSpec, physics_space
from simreal.simulation.references import is_reference
from simreal.simulation.sampling import ParamSet, bind

FIELDS: dict[str, tuple[str, ...]] = {
    "body_mass": (
        "body_mass",
        "body_inertia",
        "body_subtreemass",
        "body_invweight0",
        "dof_invweight0",
        "tendon_invweight0",
        "actuator_acc0",
    ),
    "friction": ("geom_friction",),
    "joint_damping": ("dof_damping",),
    "actuator_gain": ("actuator_gainprm", "actuator_biasprm", "actuator_forcerange"),
    "gravity": ("opt.gravity",),
    "timestep": ("opt.timestep",),
}
"""Randomizable parameter -> the MuJoCo model fields its value (and `mj_setConst`) changes."""


def batched_fields(spec: RandomizationSpec, where: str) -> tuple[str, ...]:
    """The model fields `spec` needs per world; a parameter without a per-world form is a ConfigError."""
    fields: dict[str, None] = {}
    for i, entry in enumerate(spec.params):
        if is_reference(entry.param) or entry.param not in FIELDS:
            raise ConfigError(
                f"{where}.{i}.param: {entry.param} is not supported by sim_backend: warp "
                f"(allowed: {', '.join(FIELDS)}; or sim_backend: gymnasium)"
            )
        fields.update(dict.fromkeys(FIELDS[entry.param]))
    return tuple(fields)


def _host_value(model: Any, field: str) -> np.ndarray:
    if field.startswith("opt."):
        return np.atleast_1d(np.array(getattr(model.opt, field[4:]), dtype=np.float64))
    return np.array(getattr(model, field), dtype=np.float64)


def _rows(value: np.ndarray, nworld: int) -> np.ndarray:
    return np.broadcast_to(value, (nworld, *value.shape)).copy()


class WorldPhysics:
    """Each world's physics parameters, drawn at its resets, written into the batched model's rows."""

    def __init__(self, host: gym.Env[Any, Any], spec: RandomizationSpec, nworld: int, where: str) -> None:
        self.fields = batched_fields(spec, where)
        space = physics_space(host, spec.params)
        self._set = ParamSet([bind(space, s, f"{where}.{i}") for i, s in enumerate(spec.params)], space)
        self._model = host.unwrapped.model  # type: ignore[attr-defined]
        self.rows = {f: _rows(_host_value(self._model, f), nworld) for f in self.fields}
        self.values: list[dict[str, float]] = [{} for _ in range(nworld)]

    def draw(self, world: int, rng: np.random.Generator) -> dict[str, float]:
        """New values for `world` (applied to the host model, copied into its rows); returns the record."""
        values = self._set.resample(rng)
        for f, rows in self.rows.items():
            rows[world] = _host_value(self._model, f)
        self.values[world] = values
        return values

    def upload(self, views: dict[str, torch.Tensor], worlds: np.ndarray) -> None:
        """Write the rows of `worlds` into the batched model (`views`: field -> (nworld, ...) tensors)."""
        index = torch.as_tensor(worlds, device=next(iter(views.values())).device)
        for f, rows in self.rows.items():
            view = views[f]
            view[index] = torch.as_tensor(rows[worlds], dtype=view.dtype, device=view.device).reshape(
                (len(worlds), *view.shape[1:])
            )
