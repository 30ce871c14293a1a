"""KUKA iiwa 7-DoF reaching in PyBullet, with duck-typed physics and visual parameter interfaces.

The arm (pybullet_data's `kuka_iiwa/model.urdf`, fixed base on `plane.urdf`) moves its end effector
to a target sampled in a box in front of it. Actions are joint position deltas tracked by PyBullet's
position motors, whose force limit is the "actuator gain"; the reward is dense.

Physics parameters are read and written through `param_names`, `element_names`, `get_param` and
`set_param`, so a domain-randomization layer can vary them without knowing PyBullet. The URDFs are
loaded once, and `reset` only moves joints and the target, so parameter changes persist across resets.
What the camera sees - colors, light, camera position - is read and written the same way through
`visual_param_names`, `visual_element_names`, `get_visual_param` and `set_visual_param`.

Example:
    >>> env = KukaReachEnv()
    >>> obs, info = env.reset(seed=0)
    >>> env.set_param("body_mass", 2.0 * env.get_param("body_mass"))
    >>> obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    >>> env.close()
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pybullet_data
from gymnasium import spaces
from numpy.typing import NDArray

from envs.bullet import p
from envs.kuka_camera import CAMERA_DISTANCE, Look, render_frame
from envs.params import PHYSICS, VISUALS

NOMINAL_FRAME_SKIP = 4
NOMINAL_TIMESTEP = 1.0 / 240.0
NOMINAL_GRAVITY = (0.0, 0.0, -9.81)
DEFAULT_MAX_FORCE = 300.0  # N*m, for joints whose URDF effort limit is 0
POSITION_GAIN = 0.3  # fraction of the position error the motor closes per physics step (PyBullet: 0.1)
HOME_JOINT_POSITIONS = (0.0, 0.5, 0.0, -1.6, 0.0, 1.0, 0.0)  # end effector near (0.55, 0, 0.45) m
INIT_JOINT_NOISE = 0.1  # rad, uniform perturbation of the home pose at reset
ACTION_PENALTY = 1e-3
EE_LINK_NAME = "lbr_iiwa_link_7"
# Every point the arm can reach lies in this box (reach from the base is about 1.3 m).
WORKSPACE_LOW = (-1.5, -1.5, -1.0)
WORKSPACE_HIGH = (1.5, 1.5, 2.0)
JOINT_LIMIT_MARGIN = 0.2  # rad: limits are constraints, so joints may overshoot them slightly
MAX_JOINT_VELOCITY = 100.0  # rad/s, PyBullet's clamp (its default, set explicitly so obs bounds hold)
PARAM_NAMES = tuple(PHYSICS)  # the whole shared vocabulary (envs.params)

FloatArray = NDArray[np.float64]


class KukaReachEnv(gym.Env[NDArray[np.float32], NDArray[np.float32]]):
    """Reach a sampled target with the KUKA iiwa end effector (link 7 frame origin).

    Observation (23, float32): joint positions (7), joint velocities (7), end-effector position (3),
    target position (3), target minus end effector (3); positions in metres, world frame. Bounds:
    joint limits widened by 0.2 rad (limits are soft constraints), PyBullet's 100 rad/s velocity
    clamp, and a workspace box containing every reachable point.
    Action (7, float32 in [-1, 1]): joint position deltas in units of `max_joint_delta`, added to
    the measured joint positions and clipped to the joint limits.
    Reward: `-distance(ee, target) - 1e-3 * |a|^2`. `terminated` is always False; the time limit
    (100 steps) comes from registration. `reset(options={"target_position": xyz})` places the target.
    Frames (`render_mode="rgb_array"`): `image_size` square, from a camera `camera_distance` metres from
    the point it looks at, drawn by PyBullet's CPU tiny renderer.

    `joint_damping` is PyBullet's explicit joint damping torque `-d * qdot`: the position motors
    (implicit constraints) mask it unless they saturate, and with the motors off it is unstable once
    `d * timestep` exceeds about twice a joint's inertia (link 7: 0.001 kg m^2, so d > 0.5).
    """

    metadata = {
        "render_modes": ["rgb_array"],
        "render_fps": round(1.0 / (NOMINAL_TIMESTEP * NOMINAL_FRAME_SKIP)),
    }

    def __init__(
        self,
        frame_skip: int = NOMINAL_FRAME_SKIP,
        max_joint_delta: float = 0.05,
        success_distance: float = 0.05,
        render_mode: str | None = None,
        image_size: int = 84,
        camera_distance: float = CAMERA_DISTANCE,
        target_low: tuple[float, float, float] = (0.35, -0.3, 0.2),
        target_high: tuple[float, float, float] = (0.7, 0.3, 0.6),
    ) -> None:
        if frame_skip < 1:
            raise ValueError(f"frame_skip: must be >= 1, got {frame_skip}")
        if max_joint_delta <= 0 or success_distance <= 0 or image_size < 1 or camera_distance <= 0:
            raise ValueError(
                "max_joint_delta, success_distance, image_size and camera_distance must be positive"
            )
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode: {render_mode!r} not supported (allowed: None, 'rgb_array')")
        self._target_low = np.asarray(target_low, dtype=np.float64)
        self._target_high = np.asarray(target_high, dtype=np.float64)
        if self._target_low.shape != (3,) or not np.all(self._target_low <= self._target_high):
            raise ValueError(f"target box: need 3-vectors with low <= high, got {target_low}, {target_high}")
        self.max_joint_delta = float(max_joint_delta)
        self.success_distance = float(success_distance)
        self.render_mode = render_mode
        self.image_size = int(image_size)
        self.camera_distance = float(camera_distance)

        self._client: int | None = p.connect(p.DIRECT)
        self._load_world()
        self._target = 0.5 * (self._target_low + self._target_high)  # until the first reset
        self._cache_nominal_params(int(frame_skip))
        self._apply_all_params()
        self._look = Look(self._cid, self._robot, self._plane, self._marker)

        n = len(self._joints)
        pos_low, pos_high = self._joint_lower - JOINT_LIMIT_MARGIN, self._joint_upper + JOINT_LIMIT_MARGIN
        ws_low, ws_high = np.asarray(WORKSPACE_LOW), np.asarray(WORKSPACE_HIGH)
        vel = np.full(n, MAX_JOINT_VELOCITY)
        low = np.concatenate([pos_low, -vel, ws_low, ws_low, ws_low - ws_high])
        high = np.concatenate([pos_high, vel, ws_high, ws_high, ws_high - ws_low])
        self.observation_space = spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(n,), dtype=np.float32)

    # ------------------------------------------------------------------ world
    def _load_world(self) -> None:
        """Load plane, robot and a visual-only target marker once; find joints and massive links."""
        cid = self._cid
        p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=cid)
        self._plane = p.loadURDF("plane.urdf", physicsClientId=cid)
        # Inertia from the URDF: PyBullet otherwise recomputes it from the collision meshes.
        self._robot = p.loadURDF(
            "kuka_iiwa/model.urdf", useFixedBase=True, flags=p.URDF_USE_INERTIA_FROM_FILE, physicsClientId=cid
        )
        marker = p.createVisualShape(
            p.GEOM_SPHERE, radius=0.03, rgbaColor=(0.1, 0.8, 0.1, 1.0), physicsClientId=cid
        )
        self._marker = p.createMultiBody(baseMass=0.0, baseVisualShapeIndex=marker, physicsClientId=cid)

        joints, joint_names, lower, upper, efforts, damping = [], [], [], [], [], []
        links: list[tuple[int, str]] = []
        base_name = p.getBodyInfo(self._robot, physicsClientId=cid)[0].decode()
        if p.getDynamicsInfo(self._robot, -1, physicsClientId=cid)[0] > 0:
            links.append((-1, base_name))
        for j in range(p.getNumJoints(self._robot, physicsClientId=cid)):
            info = p.getJointInfo(self._robot, j, physicsClientId=cid)
            link_name = info[12].decode()
            if p.getDynamicsInfo(self._robot, j, physicsClientId=cid)[0] > 0:
                links.append((j, link_name))
            if link_name == EE_LINK_NAME:
                self._ee_link = j
            if info[2] == p.JOINT_REVOLUTE:
                p.changeDynamics(self._robot, j, maxJointVelocity=MAX_JOINT_VELOCITY, physicsClientId=cid)
                joints.append(j)
                joint_names.append(info[1].decode())
                damping.append(info[6])
                lower.append(info[8])
                upper.append(info[9])
                efforts.append(info[10] if info[10] > 0 else DEFAULT_MAX_FORCE)
        self._joints = joints
        self._joint_names = tuple(joint_names)
        self._joint_lower = np.asarray(lower, dtype=np.float64)
        self._joint_upper = np.asarray(upper, dtype=np.float64)
        self._urdf_max_force = np.asarray(efforts, dtype=np.float64)
        self._urdf_joint_damping = np.asarray(damping, dtype=np.float64)
        self._links = [index for index, _ in links]
        self._link_names = tuple(name for _, name in links)

    @property
    def _cid(self) -> int:
        if self._client is None:
            raise RuntimeError("KukaReachEnv is closed")
        return self._client

    # ------------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        """Perturb the home pose, hold it with the motors and place the target; physics params are kept."""
        super().reset(seed=seed)
        options = dict(options or {})
        target = options.pop("target_position", None)
        if options:
            raise ValueError(f"reset options: unknown keys {sorted(options)} (allowed: ['target_position'])")
        noise = self.np_random.uniform(-INIT_JOINT_NOISE, INIT_JOINT_NOISE, size=len(self._joints))
        q0 = np.clip(np.asarray(HOME_JOINT_POSITIONS) + noise, self._joint_lower, self._joint_upper)
        for j, q in zip(self._joints, q0, strict=True):
            p.resetJointState(self._robot, j, float(q), 0.0, physicsClientId=self._cid)
        self._command(q0)
        if target is None:
            self._target = self.np_random.uniform(self._target_low, self._target_high)
        else:
            self._target = self._check_target(target)
        p.resetBasePositionAndOrientation(self._marker, self._target, (0, 0, 0, 1), physicsClientId=self._cid)
        obs, distance = self._observe()
        return obs, self._info(distance)

    def step(
        self, action: NDArray[np.float32]
    ) -> tuple[NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        """Command measured joint positions plus the scaled delta, then run `frame_skip` physics steps."""
        # np.minimum/np.maximum: np.clip's result, at a fraction of its call overhead on 7 numbers
        a = np.minimum(np.maximum(np.asarray(action, dtype=np.float64), -1.0), 1.0)
        q = self._joint_positions()
        wanted = q + self.max_joint_delta * a
        self._command(np.minimum(np.maximum(wanted, self._joint_lower), self._joint_upper))
        for _ in range(self._frame_skip):
            p.stepSimulation(physicsClientId=self._cid)
        obs, distance = self._observe()
        reward = -distance - ACTION_PENALTY * float(a @ a)
        return obs, reward, False, False, self._info(distance)

    def render(self) -> NDArray[np.uint8] | None:
        """An (image_size, image_size, 3) uint8 frame from the CPU tiny renderer, or None without a mode."""
        if self.render_mode != "rgb_array":
            return None
        return render_frame(self._cid, self._look, self.image_size, self.camera_distance)

    def close(self) -> None:
        """Disconnect this env's physics client; calling it again does nothing."""
        if self._client is not None:
            p.disconnect(physicsClientId=self._client)
            self._client = None

    # ------------------------------------------------------------------ helpers
    def _command(self, positions: FloatArray) -> None:
        p.setJointMotorControlArray(
            self._robot,
            self._joints,
            p.POSITION_CONTROL,
            targetPositions=positions.tolist(),
            forces=self._forces,
            positionGains=self._gains,
            physicsClientId=self._cid,
        )

    def _joint_positions(self) -> FloatArray:
        states = p.getJointStates(self._robot, self._joints, physicsClientId=self._cid)
        return np.fromiter((s[0] for s in states), dtype=np.float64, count=len(states))

    def _joint_states(self) -> tuple[FloatArray, FloatArray]:
        states = p.getJointStates(self._robot, self._joints, physicsClientId=self._cid)
        q = np.fromiter((s[0] for s in states), dtype=np.float64, count=len(states))
        qd = np.fromiter((s[1] for s in states), dtype=np.float64, count=len(states))
        return q, qd

    def _observe(self) -> tuple[NDArray[np.float32], float]:
        q, qd = self._joint_states()
        state = p.getLinkState(
            self._robot, self._ee_link, computeForwardKinematics=True, physicsClientId=self._cid
        )
        ee = np.asarray(state[4], dtype=np.float64)
        delta = self._target - ee
        obs = np.concatenate([q, qd, ee, self._target, delta]).astype(np.float32)
        return obs, float(np.sqrt(delta @ delta))  # np.linalg.norm's own sum, without its checks

    def set_state(self, q: FloatArray, qd: FloatArray, target: FloatArray) -> None:
        """The arm at joint positions `q` and velocities `qd`, holding `q`; the target at `target`."""
        p.resetJointStatesMultiDof(
            self._robot,
            self._joints,
            targetValues=[[float(x)] for x in q],
            targetVelocities=[[float(v)] for v in qd],
            physicsClientId=self._cid,
        )
        self._command(np.asarray(q, dtype=np.float64))
        self._target = np.asarray(target, dtype=np.float64).copy()
        p.resetBasePositionAndOrientation(self._marker, self._target, (0, 0, 0, 1), physicsClientId=self._cid)

    def _info(self, distance: float) -> dict[str, Any]:
        return {"distance": distance, "is_success": distance < self.success_distance}

    def _check_target(self, target: Any) -> FloatArray:
        xyz = np.array(target, dtype=np.float64)  # a copy: the caller may reuse its array
        if xyz.shape != (3,) or not np.all(np.isfinite(xyz)):
            raise ValueError(f"target_position: need 3 finite values, got {target!r}")
        if np.any(xyz < WORKSPACE_LOW) or np.any(xyz > WORKSPACE_HIGH):
            raise ValueError(f"target_position: {xyz} outside workspace {WORKSPACE_LOW}..{WORKSPACE_HIGH}")
        return xyz

    # ------------------------------------------------------------------ physics parameters
    def _cache_nominal_params(self, frame_skip: int) -> None:
        """Read nominal values once; `_values` then always mirrors what PyBullet holds."""
        dyn = [p.getDynamicsInfo(self._robot, link, physicsClientId=self._cid) for link in self._links]
        self._nominal_inertia = np.asarray([d[2] for d in dyn], dtype=np.float64)
        self._nominal_mass = np.asarray([d[0] for d in dyn], dtype=np.float64)
        self._elements: dict[str, tuple[str, ...]] = {
            "body_mass": self._link_names,
            "friction": self._link_names,
            "joint_damping": self._joint_names,
            "actuator_gain": self._joint_names,
            "gravity": ("x", "y", "z"),
            "timestep": ("timestep",),
            "frame_skip": ("frame_skip",),
        }
        self._values: dict[str, FloatArray] = {
            "body_mass": self._nominal_mass.copy(),
            "friction": np.asarray([d[1] for d in dyn], dtype=np.float64),
            "joint_damping": self._urdf_joint_damping.copy(),
            "actuator_gain": self._urdf_max_force.copy(),
            "gravity": np.asarray(NOMINAL_GRAVITY, dtype=np.float64),
            "timestep": np.asarray([NOMINAL_TIMESTEP]),
            "frame_skip": np.asarray([float(frame_skip)]),
        }
        self._frame_skip = frame_skip
        self._gains = [POSITION_GAIN] * len(self._joints)
        self._appliers: dict[str, Callable[[FloatArray], None]] = {
            "body_mass": self._apply_mass,
            "friction": self._apply_friction,
            "joint_damping": self._apply_damping,
            "actuator_gain": self._apply_force_limit,
            "gravity": self._apply_gravity,
            "timestep": self._apply_timestep,
            "frame_skip": self._apply_frame_skip,
        }

    def _apply_all_params(self) -> None:
        for name in PARAM_NAMES:
            self._appliers[name](self._values[name])

    def _apply_mass(self, masses: FloatArray) -> None:
        # Inertia scales with mass relative to nominal, so repeated sets never compound.
        inertia = self._nominal_inertia * (masses / self._nominal_mass)[:, None]
        for link, mass, diag in zip(self._links, masses, inertia, strict=True):
            p.changeDynamics(
                self._robot,
                link,
                mass=float(mass),
                localInertiaDiagonal=diag.tolist(),
                physicsClientId=self._cid,
            )

    def _apply_force_limit(self, limits: FloatArray) -> None:
        self._forces = limits.tolist()  # what `_command` hands the motors on every step

    def _apply_friction(self, friction: FloatArray) -> None:
        for link, mu in zip(self._links, friction, strict=True):
            p.changeDynamics(self._robot, link, lateralFriction=float(mu), physicsClientId=self._cid)

    def _apply_damping(self, damping: FloatArray) -> None:
        # A joint's damping lives on its child link, whose index equals the joint index.
        for joint, d in zip(self._joints, damping, strict=True):
            p.changeDynamics(self._robot, joint, jointDamping=float(d), physicsClientId=self._cid)

    def _apply_gravity(self, gravity: FloatArray) -> None:
        p.setGravity(*gravity.tolist(), physicsClientId=self._cid)

    def _apply_timestep(self, timestep: FloatArray) -> None:
        p.setPhysicsEngineParameter(fixedTimeStep=float(timestep[0]), physicsClientId=self._cid)

    def _apply_frame_skip(self, value: FloatArray) -> None:
        self._frame_skip = int(value[0])

    def param_names(self) -> tuple[str, ...]:
        """Names accepted by `get_param` / `set_param`."""
        return PARAM_NAMES

    def element_names(self, param: str) -> tuple[str, ...]:
        """What each entry of `param`'s array refers to (link, joint or axis names)."""
        return self._elements[self._check_name(param)]

    def get_param(self, param: str) -> FloatArray:
        """Current values (float64 copy, one per element); cheap, served from a cache."""
        return self._values[self._check_name(param)].copy()

    def set_param(self, param: str, values: FloatArray) -> None:
        """Apply `values` now; they persist across resets until set again.

        Values must be physical as `envs.params.PHYSICS` declares them (masses, motor strength and
        timestep > 0, friction and damping >= 0, frame_skip >= 1 after rounding, all finite).
        """
        name = self._check_name(param)
        v = np.array(values, dtype=np.float64)
        expected = (len(self._elements[name]),)
        if v.shape != expected:
            raise ValueError(f"{name}: expected shape {expected} ({self._elements[name]}), got {v.shape}")
        if name == "frame_skip":
            v = np.round(v)
        PHYSICS[name].check(name, v)
        self._appliers[name](v)
        self._values[name] = v

    def _check_name(self, param: str) -> str:
        if param not in PARAM_NAMES:
            raise ValueError(f"unknown physics parameter {param!r} (allowed: {', '.join(PARAM_NAMES)})")
        return param

    # ------------------------------------------------------------------ visual parameters
    def visual_param_names(self) -> tuple[str, ...]:
        """Names accepted by `get_visual_param` / `set_visual_param`."""
        return tuple(VISUALS)

    def visual_element_names(self, param: str) -> tuple[str, ...]:
        """What each entry of visual `param`'s array refers to (`<part>.r`, `light.x`, `x`, ...)."""
        return self._look.element_names(param)

    def get_visual_param(self, param: str) -> FloatArray:
        """Current values (float64 copy, one per element)."""
        return self._look.get(param)

    def set_visual_param(self, param: str, values: FloatArray) -> None:
        """Apply `values` from the next rendered frame on (see `envs.kuka_camera.Look.set`)."""
        self._look.set(param, values)


def state_from_obs(env: Any, obs: FloatArray) -> None:
    """The state an observation `[q (7), qd (7), end effector (3), target (3), target - ee (3)]` shows, set
    on the (unwrapped) env: a task file's `state_from_obs` for KukaReach."""
    n = len(HOME_JOINT_POSITIONS)
    env.set_state(obs[:n], obs[n : 2 * n], obs[2 * n + 3 : 2 * n + 6])
