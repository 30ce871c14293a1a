"""Visual domain randomization: colors, light and camera, resampled per episode from cached nominal values.

Mirrors `randomization` for what the camera sees. A `VisualRandomizationSpec` (YAML data) lists
parameters to vary; `RandomizeVisuals` binds it to an env, checks every selector and range once, at
construction, and draws new values at every reset from the env's own `np_random`. Place it inside
`PixelObservation`, so the first frame of an episode already shows the new look.

Parameters (elements in brackets; a selector names an element or a whole group, `cart` = `cart.r|g|b`):
    rgba [<geom or link>.r|g|b]   color channels in [0, 1], alpha untouched; drawn values are clipped
    light_diffuse [<light>]       diffuse intensity of each light (MuJoCo: `headlight` too)
    light_dir [<light>.x|y|z]     light direction (unit at nominal; renderers normalize it)
    camera_pos [x, y, z]          camera position; an orbit camera's look-at point, so `add` moves it rigidly

YAML shape::

    randomization:
      params:
        - {param: rgba, names: [cpole, cart], dist: uniform, low: 0.6, high: 1.4}     # per channel
        - {param: rgba, names: [rail], dist: uniform, low: 0.5, high: 1.5, shared: true}  # brightness
        - {param: light_diffuse, dist: uniform, low: 0.5, high: 1.5}
        - {param: camera_pos, names: [x, z], dist: uniform, low: -0.05, high: 0.05, mode: add}

MuJoCo back-end: colors in `model.geom_rgba` (a geom colored by its material and the default geom rgba
shows `mat_rgba`; writing `geom_rgba` overrides it, and nominal restores the default marker exactly),
lights in `model.light_diffuse` / `model.light_dir` and `model.vis.headlight.diffuse`, the camera in
`model.cam_pos` for a fixed camera or in the `lookat` of the free camera Gymnasium's renderer uses (set
on its viewer, and in its `default_camera_config` for a viewer not created yet). A free camera needs an
explicit `lookat` in `default_camera_config`: Gymnasium otherwise aims it at the median geom position of
the first frame, which no nominal value can be cached for.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from pydantic import field_validator

from envs.params import VISUALS, ParamInfo, VisualParams
from simreal.schema import Spec
from simreal.simulation.distributions import ParamEntry
from simreal.simulation.sampling import ParamWrapper

INFO_KEY = "visuals"
_DEFAULT_GEOM_RGBA = np.array([0.5, 0.5, 0.5, 1.0], dtype=np.float32)  # MuJoCo: "use the material color"


def _names(model: mujoco.MjModel, obj: mujoco.mjtObj, count: int, prefix: str) -> list[str]:
    return [mujoco.mj_id2name(model, obj, i) or f"{prefix}{i}" for i in range(count)]


class MujocoVisuals:
    """`VisualParams` over a Gymnasium `MujocoEnv` (its `model`, `data` and `mujoco_renderer`)."""

    def __init__(self, env: Any) -> None:
        self._env = env
        m = self.model = env.model
        self._raw_rgba = m.geom_rgba.copy()
        self._from_material = (m.geom_matid >= 0) & np.all(m.geom_rgba == _DEFAULT_GEOM_RGBA, axis=1)
        self._nominal_rgb = self._shown_rgba()[:, :3].astype(np.float64)
        self._nominal_light = np.vstack([m.light_diffuse, m.vis.headlight.diffuse]).astype(np.float64)
        geoms = _names(m, mujoco.mjtObj.mjOBJ_GEOM, m.ngeom, "geom")
        lights = _names(m, mujoco.mjtObj.mjOBJ_LIGHT, m.nlight, "light")
        self._elements: dict[str, tuple[str, ...]] = {
            "rgba": tuple(f"{g}.{c}" for g in geoms for c in "rgb"),
            "light_diffuse": (*lights, "headlight"),
            "light_dir": tuple(f"{light}.{a}" for light in lights for a in "xyz"),
            "camera_pos": ("x", "y", "z"),
        }

    def _shown_rgba(self) -> np.ndarray:
        """The color each geom is drawn with: its material's while it keeps the default geom rgba."""
        m = self.model
        if m.nmat == 0:
            return m.geom_rgba.copy()
        uses_material = (m.geom_matid >= 0) & np.all(m.geom_rgba == _DEFAULT_GEOM_RGBA, axis=1)
        return np.where(uses_material[:, None], m.mat_rgba[np.maximum(m.geom_matid, 0)], m.geom_rgba)

    def _get_camera(self) -> np.ndarray:
        """A fixed camera's `cam_pos`, or the free camera's `lookat` (its viewer's, or the configured one)."""
        renderer = self._env.mujoco_renderer
        if renderer.camera_id >= 0:
            return np.array(self.model.cam_pos[renderer.camera_id], dtype=np.float64)
        if renderer.viewer is not None:
            return np.array(renderer.viewer.cam.lookat, dtype=np.float64)
        lookat = (renderer.default_cam_config or {}).get("lookat")
        if lookat is None:
            raise ValueError(
                "camera_pos: the free camera looks at the median geom position of its first frame, which is "
                "not known yet (allowed: make the env with default_camera_config={'lookat': [x, y, z], ...})"
            )
        return np.array(lookat, dtype=np.float64)

    def _set_camera(self, values: np.ndarray) -> None:
        renderer = self._env.mujoco_renderer
        if renderer.camera_id >= 0:
            self.model.cam_pos[renderer.camera_id] = values
            mujoco.mj_camlight(self.model, self._env.data)
            return
        # A copy: Gymnasium envs share their module-level default config dict between instances.
        renderer.default_cam_config = {**(renderer.default_cam_config or {}), "lookat": values.copy()}
        if renderer.viewer is not None:  # else the viewer reads the config when it draws its first frame
            renderer.viewer.cam.lookat[:] = values

    def visual_param_names(self) -> tuple[str, ...]:
        return tuple(VISUALS)

    def visual_element_names(self, param: str) -> tuple[str, ...]:
        return self._elements[_check_param(param)]

    def get_visual_param(self, param: str) -> np.ndarray:
        m = self.model
        if _check_param(param) == "rgba":
            return self._shown_rgba()[:, :3].astype(np.float64).ravel()
        if param == "light_diffuse":
            return np.vstack([m.light_diffuse, m.vis.headlight.diffuse]).mean(axis=1).astype(np.float64)
        if param == "light_dir":
            return m.light_dir.astype(np.float64).ravel()
        return self._get_camera()

    def set_visual_param(self, param: str, values: np.ndarray) -> None:
        m = self.model
        v = np.asarray(values, dtype=np.float64)
        if v.shape != (len(self.visual_element_names(param)),):
            raise ValueError(f"{param}: expected {len(self._elements[param])} values, got shape {v.shape}")
        if param == "rgba":
            for g, rgb in enumerate(v.reshape(-1, 3)):
                if self._from_material[g] and np.array_equal(rgb, self._nominal_rgb[g]):
                    m.geom_rgba[g] = self._raw_rgba[g]  # the material's color again, exactly as compiled
                    continue
                alpha = m.mat_rgba[m.geom_matid[g], 3] if self._from_material[g] else self._raw_rgba[g, 3]
                rgba = np.append(rgb, alpha)
                if self._from_material[g] and np.array_equal(rgba.astype(np.float32), _DEFAULT_GEOM_RGBA):
                    rgba[0] = np.nextafter(np.float32(0.5), np.float32(1.0))  # not the "use material" marker
                m.geom_rgba[g] = rgba
        elif param == "light_diffuse":
            mean = self._nominal_light.mean(axis=1)
            safe = np.where(mean > 0, mean, 1.0)
            rgb = np.where((mean > 0)[:, None], self._nominal_light * (v / safe)[:, None], v[:, None])
            m.light_diffuse[:] = rgb[:-1]
            m.vis.headlight.diffuse[:] = rgb[-1]
        elif param == "light_dir":
            m.light_dir[:] = v.reshape(-1, 3)
            mujoco.mj_camlight(m, self._env.data)  # world-frame light directions, used by the renderer
        else:
            self._set_camera(v)


def _check_param(param: str) -> str:
    if param not in VISUALS:
        raise ValueError(f"param: unknown visual parameter {param!r} (allowed: {', '.join(VISUALS)})")
    return param


def visuals_of(env: gym.Env[Any, Any]) -> VisualParams:
    """The visual parameter interface of `env`: MuJoCo through its model, others through their own methods."""
    base = env.unwrapped
    if isinstance(getattr(base, "model", None), mujoco.MjModel):
        return MujocoVisuals(base)
    if isinstance(base, VisualParams):
        return base
    raise ValueError(
        f"env {env.spec.id if env.spec else type(base).__name__}: no visual parameters to randomize "
        "(allowed: Gymnasium MuJoCo envs, or envs implementing visual_param_names/visual_element_names/"
        "get_visual_param/set_visual_param)"
    )


class VisualSpace:
    """The `ParamSpace` of what an env's camera sees."""

    family = "visual"

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        self._visuals = visuals_of(env)

    def names(self) -> tuple[str, ...]:
        return self._visuals.visual_param_names()

    def info(self, param: str) -> ParamInfo:
        return VISUALS[param]

    def elements(self, param: str) -> tuple[str, ...]:
        return self._visuals.visual_element_names(param)

    def get(self, param: str) -> np.ndarray:
        return self._visuals.get_visual_param(param)

    def set(self, param: str, values: np.ndarray) -> None:
        self._visuals.set_visual_param(param, values)


class VisualParamSpec(ParamEntry):
    """One randomized (or fixed) visual parameter over selected elements or element groups.

    One value is drawn per selected element (so per color channel: hue and brightness change), or with
    `shared: true` one value for all of them (a uniform brightness change).
    """

    @field_validator("param")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in VISUALS:
            raise ValueError(f"unknown visual parameter {value!r} (allowed: {', '.join(VISUALS)})")
        return value


class VisualRandomizationSpec(Spec):
    """Which visual parameters vary per episode."""

    params: tuple[VisualParamSpec, ...] = ()
    """The visual parameters varied, drawn at every reset."""


class RandomizeVisuals(ParamWrapper):
    """Resample visual parameters at every reset, relative to cached nominal values.

    The absolute values applied go into reset `info["visuals"]` (`"param/element" -> float`).
    `set_enabled(False)` restores the nominal values exactly and stops resampling. `where` is the key
    path of the params list in the config, used in error messages (`<where>.<i>.names: ...`).
    """

    info_key = INFO_KEY

    def __init__(self, env: gym.Env[Any, Any], spec: VisualRandomizationSpec, where: str = "visuals") -> None:
        super().__init__(env, VisualSpace(env), spec.params, where)
