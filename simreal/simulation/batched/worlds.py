"""Per-world physics: each world of a batched model draws its own parameters at its own resets.

The YAML entries are bound (selectors, modes, physical bounds) against a host Gymnasium env of the task
exactly as `RandomizeDynamics` binds them and drawn from the same distributions, so validation and the
`info["dynamics"]` records are the Gymnasium path's. The values of all
resetting worlds are written into their rows of the batched model at once by the host's own
`MujocoParams.write_fields` (masses with their inertia; MuJoCo's derived constants from `mj_setConst`
per world on the host model); gravity and timestep become per-world option arrays.

`frame_skip` (the number of substeps, one for all worlds in a batched step) and `CustomParam`s
(functions of a Python env object) have no per-world form and are refused at construction.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
import torch

from simreal.schema import ConfigError
from simreal.simulation.adr import AdrState
from simreal.simulation.physics import MASS_DERIVED, MODEL_PARAMS, MujocoParams
from simreal.simulation.randomization import RandomizationSpec, physics_space
from simreal.simulation.references import is_reference
from simreal.simulation.sampling import BoundParam, bind

FIELDS: dict[str, tuple[str, ...]] = {
    name: (*p.fields, *p.derived) for name, p in MODEL_PARAMS.items() if p.write is not None
}
"""Randomizable parameter -> the MuJoCo model fields its value (and `mj_setConst`) changes: from the one
definition of each parameter (`simreal.simulation.physics.MODEL_PARAMS`)."""


def batched_fields(spec: RandomizationSpec, where: str) -> tuple[str, ...]:
    """The model fields `spec` needs per world; what has no per-world form is a one-line ConfigError
    (`where`: the randomization's key path)."""
    if spec.resample_every_steps is not None:
        raise ConfigError(
            f"{where}.resample_every_steps: not supported by sim_backend: warp (worlds draw their physics "
            "at their resets) (allowed: null; or sim_backend: gymnasium)"
        )
    fields: dict[str, None] = {}
    for i, entry in enumerate(spec.params):
        if is_reference(entry.param) or entry.param not in FIELDS:
            raise ConfigError(
                f"{where}.params.{i}.param: {entry.param} is not supported by sim_backend: warp "
                f"(allowed: {', '.join(FIELDS)}; or sim_backend: gymnasium)"
            )
        fields.update(dict.fromkeys(FIELDS[entry.param]))
    return tuple(fields)


DERIVED = MASS_DERIVED
"""The fields `mj_setConst` recomputes from the masses (per world, on the host model)."""


def _host_value(model: Any, field: str) -> np.ndarray:
    if field.startswith("opt."):
        return np.atleast_1d(np.array(getattr(model.opt, field[4:]), dtype=np.float64))
    return np.array(getattr(model, field), dtype=np.float64)


def _rows(value: np.ndarray, nworld: int) -> np.ndarray:
    return np.broadcast_to(value, (nworld, *value.shape)).copy()


class WorldPhysics:
    """Each world's physics parameters, drawn at its resets, written into the batched model's rows.

    Each YAML entry is drawn for all resetting worlds at once (`BoundParam.draw(rng, worlds)`: the same
    distribution, selectors and clipping as one env's draw); the values are written with the host's own
    `write_fields`; only masses go through the host model, world by world, for `mj_setConst`'s derived
    constants."""

    def __init__(
        self,
        host: gym.Env[Any, Any],
        spec: RandomizationSpec,
        nworld: int,
        where: str,
        adr: AdrState | None = None,
    ) -> None:
        """`adr`: the ADR state the worlds draw from and report to (`randomization.adr`): each world's
        episode pins an edge (or none) as one env's would, and files its return at its end."""
        self.fields = batched_fields(spec, where)
        params = f"{where}.params"
        self.adr = adr
        self._dims = adr.dimension_of(spec.params) if adr is not None else {}
        self._pin = np.full(nworld, -1)  # the ADR dimension a world's episode pins (-1: none)
        self._high = np.zeros(nworld, dtype=bool)  # ... at its high edge (else low)
        space = physics_space(host, spec.params)
        self._bound = [bind(space, s, f"{params}.{i}") for i, s in enumerate(spec.params)]
        backend = space.backend
        assert isinstance(backend, MujocoParams)  # a batched task is a Gymnasium MuJoCo env
        self._backend = backend
        self._model = backend.model
        self._scratch = mujoco.MjData(self._model)  # mj_setConst's workspace (the state is not used)
        self._nominal = {name: np.asarray(space.get(name), dtype=np.float64) for name in self._names}
        self.rows = {f: _rows(_host_value(self._model, f), nworld) for f in self.fields}
        self.values: list[dict[str, float]] = [{} for _ in range(nworld)]

    @property
    def _names(self) -> list[str]:
        return list(dict.fromkeys(b.spec.param for b in self._bound))

    def draw(self, worlds: np.ndarray, rng: np.random.Generator) -> None:
        """New values for `worlds` (one array draw per YAML entry) into their rows and their records."""
        arrays = {name: np.tile(nominal, (len(worlds), 1)) for name, nominal in self._nominal.items()}
        records: list[dict[str, float]] = [{} for _ in worlds]
        self._begin_episodes(worlds, rng)
        for i, b in enumerate(self._bound):
            drawn = (
                self._adr_draw(b, self._dims[i], worlds, rng) if i in self._dims else b.draw(rng, len(worlds))
            )
            arrays[b.spec.param][:, b.indices] = drawn
            for record, row in zip(records, drawn.tolist(), strict=True):
                record.update(zip(b.labels, row, strict=True))
        for w, record in zip(worlds, records, strict=True):
            self.values[w] = record
        block = {f: rows[worlds] for f, rows in self.rows.items()}
        for name, values in arrays.items():
            self._backend.write_fields(name, values, block)
        if "body_mass" in arrays:
            self._derive(block)
        for f, rows in self.rows.items():
            rows[worlds] = block[f]

    def _begin_episodes(self, worlds: np.ndarray, rng: np.random.Generator) -> None:
        """ADR: each new episode pins one edge with `boundary_prob` (`AdrState.begin_episode`'s rule)."""
        adr = self.adr
        if adr is None or adr.frozen or not adr.dims:
            return
        n = len(worlds)
        pinned = rng.random(n) < adr.spec.boundary_prob
        self._pin[worlds] = np.where(pinned, rng.integers(len(adr.dims), size=n), -1)
        self._high[worlds] = rng.random(n) >= 0.5

    def _adr_draw(self, b: BoundParam, dim: int, worlds: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """An ADR entry for `worlds`: inside the dimension's current range, or at the pinned edge."""
        assert self.adr is not None
        d = self.adr.dims[dim]
        raw = d.sample(rng, len(worlds) * b.draws_per_world).reshape(len(worlds), -1)
        edge = np.where(self._high[worlds], d.high, d.low)
        at_edge = self._pin[worlds] == dim
        raw[at_edge] = edge[at_edge, None]
        return b.values(raw)

    def end_episodes(self, worlds: np.ndarray, returns: np.ndarray) -> None:
        """ADR: file each finished episode's return under the edge it pinned."""
        adr = self.adr
        if adr is None:
            return
        for w, episode_return in zip(worlds, returns, strict=True):
            if self._pin[w] >= 0:
                adr.pinned = (int(self._pin[w]), "high" if self._high[w] else "low")
                adr.episode_return = float(episode_return)
                adr.end_episode()
                self._pin[w] = -1
        adr.pinned = None

    def _derive(self, block: dict[str, np.ndarray]) -> None:
        """`mj_setConst` per world on the host model (its masses set from the block, nominal after)."""
        m, scratch = self._model, self._scratch
        mass, inertia = m.body_mass.copy(), m.body_inertia.copy()
        for j in range(len(block["body_mass"])):
            m.body_mass[:] = block["body_mass"][j]
            m.body_inertia[:] = block["body_inertia"][j]
            mujoco.mj_setConst(m, scratch)
            for f in DERIVED:
                block[f][j] = getattr(m, f)
        m.body_mass[:], m.body_inertia[:] = mass, inertia
        mujoco.mj_setConst(m, scratch)

    def upload(self, views: dict[str, torch.Tensor], worlds: np.ndarray) -> None:
        """Write the rows of `worlds` into the batched model (`views`: field -> (nworld, ...) tensors)."""
        full = len(worlds) == len(self.values)
        index = torch.as_tensor(worlds, device=next(iter(views.values())).device)
        for f, rows in self.rows.items():
            view = views[f]
            data = torch.as_tensor(rows if full else rows[worlds], dtype=view.dtype, device=view.device)
            if full:
                view.copy_(data.reshape(view.shape))
            else:
                view[index] = data.reshape((len(worlds), *view.shape[1:]))
