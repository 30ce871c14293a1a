"""What the KUKA reach camera sees - colors, light, camera position - as named visual parameters.

`Look` holds the visual state of one PyBullet client (read once from the loaded bodies, then changed
through `set`); `render_frame` draws it with the CPU tiny renderer, the same renderer for source and
target. Kept apart from `kuka_reach` so the task module stays about the task.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from envs.bullet import p
from envs.params import VISUALS

FloatArray = NDArray[np.float64]

# Camera and light of `render` (PyBullet's CPU tiny renderer). The light values are PyBullet's own
# defaults for a z-up world, passed explicitly so that they can be varied; the renderer normalizes the
# direction, so the unit vector gives the same image.
CAMERA_TARGET = (0.4, 0.0, 0.35)  # m, the point the camera looks at
CAMERA_DISTANCE, CAMERA_YAW, CAMERA_PITCH = 1.5, 60.0, -25.0  # m, deg, deg
LIGHT_DIRECTION = (-50.0, 30.0, 100.0)
LIGHT_COLOR = (1.0, 1.0, 1.0)
LIGHT_DISTANCE = 2.0
LIGHT_AMBIENT_COEFF, LIGHT_DIFFUSE_COEFF, LIGHT_SPECULAR_COEFF = 0.6, 0.35, 0.05


class Look:
    """Visual parameters of one scene: `<part>.r|g|b` colors of the robot links, `floor` and `target`
    (alpha kept as loaded), the light's diffuse coefficient and direction, and the camera's look-at point
    (offsetting it moves the camera rigidly)."""

    def __init__(self, client: int, robot: int, plane: int, marker: int) -> None:
        self._cid = client
        base_name = p.getBodyInfo(robot, physicsClientId=client)[0].decode()
        colors: dict[tuple[int, int], tuple[float, ...]] = {}
        for body in (robot, plane, marker):
            for shape in p.getVisualShapeData(body, physicsClientId=client):
                colors.setdefault((shape[0], shape[1]), shape[7])
        parts: list[tuple[str, int, int]] = []
        for body, link in colors:
            if body == robot:
                name = (
                    base_name if link < 0 else p.getJointInfo(body, link, physicsClientId=client)[12].decode()
                )
                parts.append((name, body, link))
        parts += [("floor", plane, -1), ("target", marker, -1)]
        self._color_parts = [(body, link) for _, body, link in parts]
        rgba = np.asarray([colors[part] for part in self._color_parts], dtype=np.float64)
        self._alpha = rgba[:, 3].copy()
        direction = np.asarray(LIGHT_DIRECTION, dtype=np.float64)
        self._elements: dict[str, tuple[str, ...]] = {
            "rgba": tuple(f"{name}.{c}" for name, _, _ in parts for c in "rgb"),
            "light_diffuse": ("light",),
            "light_dir": ("light.x", "light.y", "light.z"),
            "camera_pos": ("x", "y", "z"),
        }
        self.values: dict[str, FloatArray] = {
            "rgba": rgba[:, :3].ravel(),
            "light_diffuse": np.asarray([LIGHT_DIFFUSE_COEFF]),
            "light_dir": direction / np.linalg.norm(direction),
            "camera_pos": np.asarray(CAMERA_TARGET, dtype=np.float64),
        }

    def element_names(self, param: str) -> tuple[str, ...]:
        return self._elements[_check(param)]

    def get(self, param: str) -> FloatArray:
        return self.values[_check(param)].copy()

    def set(self, param: str, values: FloatArray) -> None:
        """Apply `values` from the next rendered frame on; they persist across resets until set again.

        Colors must lie in [0, 1], the diffuse coefficient must be >= 0 and the light direction non-zero.
        """
        name = _check(param)
        v = np.array(values, dtype=np.float64)
        expected = (len(self._elements[name]),)
        if v.shape != expected or not np.all(np.isfinite(v)):
            raise ValueError(f"{name}: expected {expected[0]} finite values, got {v}")
        if name == "rgba" and not np.all((v >= 0.0) & (v <= 1.0)):
            raise ValueError(f"rgba: colors must lie in [0, 1], got {v}")
        if name == "light_diffuse" and v[0] < 0.0:
            raise ValueError(f"light_diffuse: must be >= 0, got {v[0]}")
        if name == "light_dir" and not np.any(v):
            raise ValueError("light_dir: the light direction must be non-zero")
        if name == "rgba":
            changed = np.any(v.reshape(-1, 3) != self.values["rgba"].reshape(-1, 3), axis=1)
            for i in np.flatnonzero(changed):
                body, link = self._color_parts[i]
                color = [*v[3 * i : 3 * i + 3].tolist(), float(self._alpha[i])]
                p.changeVisualShape(body, link, rgbaColor=color, physicsClientId=self._cid)
        self.values[name] = v


def _check(param: str) -> str:
    if param not in VISUALS:
        raise ValueError(f"unknown visual parameter {param!r} (allowed: {', '.join(VISUALS)})")
    return param


def render_frame(client: int, look: Look, image_size: int, camera_distance: float) -> NDArray[np.uint8]:
    """An (image_size, image_size, 3) uint8 frame of the scene as `look` describes it."""
    view = p.computeViewMatrixFromYawPitchRoll(
        cameraTargetPosition=look.values["camera_pos"].tolist(),
        distance=camera_distance,
        yaw=CAMERA_YAW,
        pitch=CAMERA_PITCH,
        roll=0.0,
        upAxisIndex=2,
    )
    proj = p.computeProjectionMatrixFOV(fov=60.0, aspect=1.0, nearVal=0.05, farVal=5.0)
    _, _, rgba, _, _ = p.getCameraImage(
        image_size,
        image_size,
        viewMatrix=view,
        projectionMatrix=proj,
        lightDirection=look.values["light_dir"].tolist(),
        lightColor=list(LIGHT_COLOR),
        lightDistance=LIGHT_DISTANCE,
        lightAmbientCoeff=LIGHT_AMBIENT_COEFF,
        lightDiffuseCoeff=float(look.values["light_diffuse"][0]),
        lightSpecularCoeff=LIGHT_SPECULAR_COEFF,
        renderer=p.ER_TINY_RENDERER,
        physicsClientId=client,
    )
    frame = np.asarray(rgba, dtype=np.uint8).reshape(image_size, image_size, 4)
    return np.ascontiguousarray(frame[:, :, :3])
