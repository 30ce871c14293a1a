"""The KUKA iiwa reaching task of `envs.kuka_reach`, in MuJoCo instead of PyBullet: the same robot in
another engine, the honest stand-in for "real" (contacts, solver, actuator model and integration differ).

MuJoCo loads the same pybullet_data `kuka_iiwa/model.urdf` (links, masses, inertias, joint limits and
damping as the URDF states them); `mujoco.MjSpec` adds what the URDF does not carry: a floor, an
end-effector site at the link-7 frame origin, a visual target sphere, and one motor per joint.

Aligned with the PyBullet task (same spaces, units and meaning):
- observation (23): joint positions, joint velocities, end-effector position, target, target - ee;
  the same bounds;
- action (7, [-1, 1]): joint position deltas of `max_joint_delta` rad added to the measured positions,
  clipped to the joint limits;
- control period 1/60 s: timestep 1/240 s x frame_skip 4; gravity -9.81;
- reward `-distance - 1e-3 |a|^2`, `info["is_success"]` when closer than 5 cm, 100-step episodes (the
  task's time limit), the same home pose, reset noise and target box, `reset(options={"target_position"})`.

Where the engines differ (and cannot be made to agree):
- the motors: PyBullet's position motor is a velocity constraint (it asks for `0.3 * error / dt` and
  solves for the impulse, up to its force limit, together with the contacts); here the same velocity
  command becomes a torque by MuJoCo's inverse dynamics before each physics step, clipped to the same
  force limit (`actuator_gain`, 300 N m) per joint - close, but not the same coupling;
- contacts and friction (MuJoCo's soft convex contacts vs Bullet's), and the integrators (MuJoCo's
  Euler with implicit damping vs Bullet's);
- link 0 (the fixed base) is part of MuJoCo's world body, so physics parameters list links 1-7, as
  PyBullet does (its base has no mass when fixed).

Physics parameters follow the shared vocabulary (`envs.params`) with PyBullet's meanings, so one YAML
means the same on both engines: `actuator_gain` is the motor's force limit (`actuator_gain_means`).
"""

from __future__ import annotations

import os
from typing import Any

import mujoco
import numpy as np
import pybullet_data
from gymnasium import spaces
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
from numpy.typing import NDArray

from envs.kuka_reach import (
    ACTION_PENALTY,
    DEFAULT_MAX_FORCE,
    EE_LINK_NAME,
    HOME_JOINT_POSITIONS,
    INIT_JOINT_NOISE,
    JOINT_LIMIT_MARGIN,
    MAX_JOINT_VELOCITY,
    NOMINAL_FRAME_SKIP,
    NOMINAL_GRAVITY,
    NOMINAL_TIMESTEP,
    POSITION_GAIN,
    WORKSPACE_HIGH,
    WORKSPACE_LOW,
)

FloatArray = NDArray[np.float64]
URDF = os.path.join(pybullet_data.getDataPath(), "kuka_iiwa", "model.urdf")
CAMERA = {"azimuth": 150.0, "elevation": -25.0, "lookat": np.array([0.4, 0.0, 0.35])}  # PyBullet's view


def build_model() -> mujoco.MjModel:
    """The URDF arm on a floor, with an end-effector site, a target sphere and one motor per joint."""
    spec = mujoco.MjSpec.from_file(URDF)
    spec.option.timestep = NOMINAL_TIMESTEP
    spec.option.gravity = NOMINAL_GRAVITY
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_EULER
    world = spec.worldbody
    world.add_light(name="light", pos=[0.0, 0.0, 3.0], dir=[0.0, 0.0, -1.0], diffuse=[0.7, 0.7, 0.7])
    floor = world.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[3.0, 3.0, 0.1])
    floor.rgba = [0.8, 0.8, 0.8, 1.0]
    ee = spec.body(EE_LINK_NAME)
    ee.add_site(name="ee", pos=[0.0, 0.0, 0.0], size=[0.01, 0.01, 0.01])
    target = world.add_body(name="target", mocap=True)
    marker = target.add_geom(name="target", type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[0.03, 0.0, 0.0])
    marker.rgba, marker.contype, marker.conaffinity = [0.1, 0.8, 0.1, 1.0], 0, 0
    for joint in spec.joints:  # torque motors; `step` computes the torque (see KukaReachMujocoEnv.step)
        motor = spec.add_actuator(name=joint.name, target=joint.name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        motor.ctrllimited = mujoco.mjtLimited.mjLIMITED_FALSE
        motor.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
        motor.forcerange = [-DEFAULT_MAX_FORCE, DEFAULT_MAX_FORCE]
    return spec.compile()


class KukaReachMujocoEnv(MujocoEnv):
    """Reach a sampled target with the KUKA iiwa end effector, simulated by MuJoCo (see the module doc).

    `actuator_gain_means = "force_limit"` tells a parameter back-end that this env's motor strength is
    its force limit (`actuator_forcerange`), as in PyBullet, not a servo gain."""

    actuator_gain_means = "force_limit"

    metadata = {
        "render_modes": ["rgb_array", "depth_array"],
        "render_fps": round(1.0 / (NOMINAL_TIMESTEP * NOMINAL_FRAME_SKIP)),
    }

    def __init__(
        self,
        frame_skip: int = NOMINAL_FRAME_SKIP,
        max_joint_delta: float = 0.05,
        success_distance: float = 0.05,
        render_mode: str | None = None,
        image_size: int = 84,
        camera_distance: float = 1.5,
        target_low: tuple[float, float, float] = (0.35, -0.3, 0.2),
        target_high: tuple[float, float, float] = (0.7, 0.3, 0.6),
    ) -> None:
        if frame_skip < 1 or max_joint_delta <= 0 or success_distance <= 0 or image_size < 1:
            raise ValueError("frame_skip >= 1; max_joint_delta, success_distance and image_size > 0")
        self.max_joint_delta = float(max_joint_delta)
        self.success_distance = float(success_distance)
        self._target_low = np.asarray(target_low, dtype=np.float64)
        self._target_high = np.asarray(target_high, dtype=np.float64)
        camera: Any = {**CAMERA, "distance": float(camera_distance)}
        super().__init__(
            URDF,
            int(frame_skip),
            observation_space=None,
            render_mode=render_mode,
            width=int(image_size),
            height=int(image_size),
            default_camera_config=camera,
        )
        m = self.model
        self._joint_lower, self._joint_upper = m.jnt_range[:, 0].copy(), m.jnt_range[:, 1].copy()
        self._ee_site = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, "ee")
        self._target_mocap = int(m.body_mocapid[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "target")])
        self._target = 0.5 * (self._target_low + self._target_high)
        self._command = np.zeros(m.nu)
        n = m.nu
        ws_low, ws_high = np.asarray(WORKSPACE_LOW), np.asarray(WORKSPACE_HIGH)
        vel = np.full(n, MAX_JOINT_VELOCITY)
        low = np.concatenate([self._joint_lower - JOINT_LIMIT_MARGIN, -vel, ws_low, ws_low, ws_low - ws_high])
        high = np.concatenate(
            [self._joint_upper + JOINT_LIMIT_MARGIN, vel, ws_high, ws_high, ws_high - ws_low]
        )
        self.observation_space = spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)

    def _initialize_simulation(self) -> tuple[mujoco.MjModel, mujoco.MjData]:
        model = build_model()
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, self.height)
        return model, mujoco.MjData(model)

    def _set_action_space(self) -> spaces.Box:
        self.action_space = spaces.Box(-1.0, 1.0, shape=(self.model.nu,), dtype=np.float32)
        return self.action_space

    # ------------------------------------------------------------------ gym API
    def reset_model(self) -> NDArray[np.float32]:  # type: ignore[override]  # float32, as in PyBullet
        raise NotImplementedError  # `reset` below does everything (it needs the options)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        """Perturb the home pose, place the target; physics parameters are kept (as in PyBullet)."""
        super(MujocoEnv, self).reset(seed=seed)
        options = dict(options or {})
        target = options.pop("target_position", None)
        if options:
            raise ValueError(f"reset options: unknown keys {sorted(options)} (allowed: ['target_position'])")
        mujoco.mj_resetData(self.model, self.data)
        noise = self.np_random.uniform(-INIT_JOINT_NOISE, INIT_JOINT_NOISE, size=self.model.nq)
        q0 = np.clip(np.asarray(HOME_JOINT_POSITIONS) + noise, self._joint_lower, self._joint_upper)
        self.set_state(q0, np.zeros(self.model.nv))
        self._command = q0.copy()
        if target is None:
            self._target = self.np_random.uniform(self._target_low, self._target_high)
        else:
            self._target = np.array(target, dtype=np.float64)
            if self._target.shape != (3,) or not np.all(np.isfinite(self._target)):
                raise ValueError(f"target_position: need 3 finite values, got {target!r}")
        self.data.mocap_pos[self._target_mocap] = self._target
        mujoco.mj_forward(self.model, self.data)
        obs, distance = self._observe()
        return obs, self._info(distance)

    def step(  # type: ignore[override]  # float32 observations, as in PyBullet
        self, action: NDArray[np.float32]
    ) -> tuple[NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        """Command measured joint positions plus the scaled delta; the motors track it for `frame_skip`
        physics steps as PyBullet's do (see `_motor_torques`)."""
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        self._command = np.clip(
            self.data.qpos + self.max_joint_delta * a, self._joint_lower, self._joint_upper
        )
        for _ in range(self.frame_skip):
            self.data.ctrl[:] = self._motor_torques()
            mujoco.mj_step(self.model, self.data)
        obs, distance = self._observe()
        reward = -distance - ACTION_PENALTY * float(a @ a)
        if self.render_mode == "human":
            self.render()
        return obs, reward, False, False, self._info(distance)

    def set_target_state(self, q: FloatArray, qd: FloatArray, target: FloatArray) -> None:
        """The arm at joint positions `q` and velocities `qd`, holding `q`; the target at `target`."""
        self.set_state(np.asarray(q, dtype=np.float64), np.asarray(qd, dtype=np.float64))
        self._command = np.asarray(q, dtype=np.float64).copy()
        self._target = np.asarray(target, dtype=np.float64).copy()
        self.data.mocap_pos[self._target_mocap] = self._target
        mujoco.mj_forward(self.model, self.data)

    def _motor_torques(self) -> FloatArray:
        """PyBullet's position motor, as torques: the velocity it asks for (`0.3 * error / timestep`,
        within 100 rad/s) reached in one physics step, by inverse dynamics, within each motor's force
        limit. PyBullet solves this as a constraint; here it is a force computed before the step."""
        m, d = self.model, self.data
        error = self._command - d.qpos
        wanted = np.clip(POSITION_GAIN * error / m.opt.timestep, -MAX_JOINT_VELOCITY, MAX_JOINT_VELOCITY)
        d.qacc[:] = (wanted - d.qvel) / m.opt.timestep
        mujoco.mj_inverse(m, d)
        limit = m.actuator_forcerange[:, 1]
        return np.clip(d.qfrc_inverse, -limit, limit)

    def _observe(self) -> tuple[NDArray[np.float32], float]:
        ee = self.data.site_xpos[self._ee_site].copy()
        delta = self._target - ee
        obs = np.concatenate([self.data.qpos, self.data.qvel, ee, self._target, delta]).astype(np.float32)
        return obs, float(np.linalg.norm(delta))

    def _info(self, distance: float) -> dict[str, Any]:
        return {"distance": distance, "is_success": distance < self.success_distance}


def state_from_obs(env: Any, obs: FloatArray) -> None:
    """The state an observation `[q (7), qd (7), end effector (3), target (3), target - ee (3)]` shows, set
    on the (unwrapped) env: KukaReach's `state_from_obs` on the MuJoCo engine."""
    n = env.model.nq
    env.set_target_state(obs[:n], obs[n : 2 * n], obs[2 * n + 3 : 2 * n + 6])
