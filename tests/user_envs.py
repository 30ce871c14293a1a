"""A user's own robot code, as a test module: an env class, a variant of it, an effect and a parameter.

Nothing here is known to simreal; tasks name it by `module:attr` (the test directory is on the path of
spawned workers too). The env is a 1-D point mass driven by a motor: fast, deterministic under a seed.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, SupportsFloat

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
from numpy.typing import NDArray

from simreal import CustomParam
from simreal.simulation.effects import PROBABILITY, ActionEffect, Param

Array = NDArray[np.float32]


class PointMass(gym.Env[Array, Array]):
    """Move a point mass to the origin: obs (position, velocity), action a force in [-1, 1].

    `mass` and `gain` are the robot's physical properties (varied through `MASS`/`GAIN` below);
    the reward is -|x| - 0.01 a^2. Episodes end after `max_episode_steps` (set by the task)."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, mass: float = 1.0, gain: float = 1.0, dt: float = 0.05) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.mass, self.gain, self.dt = float(mass), float(gain), float(dt)
        self.steps_taken = 0
        self._state = np.zeros(2)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Array, dict]:
        super().reset(seed=seed)
        self._state = self.np_random.uniform(-1.0, 1.0, size=2)
        return self._state.astype(np.float32), {}

    def step(self, action: Array) -> tuple[Array, SupportsFloat, bool, bool, dict[str, Any]]:
        self.steps_taken += 1
        force = self.gain * float(np.clip(action, -1.0, 1.0)[0])
        x, v = self._state
        v = v + self.dt * force / self.mass
        x = x + self.dt * v
        self._state = np.array([x, v])
        reward = -abs(x) - 0.01 * force**2
        return self._state.astype(np.float32), float(reward), False, False, {}


class HeavyPointMass(PointMass):
    """The "real" robot: the same interface, a heavier body and a sticky motor (another env class)."""

    def __init__(self, stiction: float = 0.2) -> None:
        super().__init__(mass=2.5, gain=0.8)
        self.stiction = stiction

    def step(self, action: Array) -> tuple[Array, SupportsFloat, bool, bool, dict[str, Any]]:
        a = np.asarray(action, dtype=np.float32)
        return super().step(np.where(np.abs(a) < self.stiction, 0.0, a).astype(np.float32))


class WrongSpaces(PointMass):
    """A target whose observation has an extra entry: a policy trained on `PointMass` cannot run on it."""

    def __init__(self) -> None:
        super().__init__()
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Array, dict]:
        obs, info = super().reset(seed=seed)
        return np.append(obs, 0.0).astype(np.float32), info


class WrongMotors(PointMass):
    """A target with a second motor: its action space differs (the observation does not)."""

    def __init__(self) -> None:
        super().__init__()
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)

    def step(self, action: Array) -> tuple[Array, float, bool, bool, dict]:
        return super().step(np.asarray(action)[:1])


class MotorSlip(ActionEffect):
    """With probability `prob` per step the command is lost (the motor receives 0)."""

    name = "motor_slip"
    params: ClassVar = {"prob": PROBABILITY}
    prob: Param

    def __init__(self, env: gym.Env[Any, Any], prob: float | list[float]) -> None:
        super().__init__(env, prob=prob)
        self.slipped = 0

    def action(self, action: Array) -> Array:
        if self.np_random.random() < self.now["prob"]:
            self.slipped += 1
            return np.zeros_like(action)
        return action


MASS = CustomParam(
    get=lambda env: np.array([env.mass]),
    set=lambda env, v: setattr(env, "mass", float(v[0])),
    elements=("body",),
    doc="mass of the point",
    low=0.0,
    low_inclusive=False,
)
GAIN = CustomParam(
    get=lambda env: np.array([env.gain]),
    set=lambda env, v: setattr(env, "gain", float(v[0])),
    elements=("motor",),
    low=0.0,
    low_inclusive=False,
    high=5.0,
)
NOT_A_PARAM = 3.0


def make_point_mass(**kwargs: Any) -> PointMass:
    """An env factory (a function, not a class) is an entry point too."""
    return PointMass(**kwargs)


class CountingRobot(PointMass):
    """A "real robot": it counts every step it takes and how many of it are connected at once (in this
    process); with `lock_path` a second connection from any process fails, as a robot's driver would."""

    steps_taken_total = 0
    connected = 0
    most_connected = 0

    def __init__(self, lock_path: str | None = None) -> None:
        super().__init__(mass=1.5)
        self._lock = lock_path
        if lock_path is not None:
            try:
                os.close(os.open(lock_path, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                raise RuntimeError(f"robot busy: another connection holds {lock_path}") from None
        type(self).connected += 1
        type(self).most_connected = max(type(self).most_connected, type(self).connected)
        self._closed = False

    @classmethod
    def forget(cls) -> None:
        cls.steps_taken_total = cls.connected = cls.most_connected = 0

    def step(self, action: Array) -> tuple[Array, SupportsFloat, bool, bool, dict[str, Any]]:
        type(self).steps_taken_total += 1
        return super().step(action)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            type(self).connected -= 1
            if self._lock is not None:
                os.unlink(self._lock)


# The point mass as a user's task file would describe it: its two parameters and its effect (tests add a
# name, targets and whatever else they exercise).
POINT_SOURCE: dict[str, Any] = {
    "env": "user_envs:PointMass",
    "max_episode_steps": 40,
    "imports": ["user_envs"],
    "randomization": {
        "params": [
            {"param": "user_envs:MASS", "dist": "log_uniform", "low": 0.5, "high": 2.0},
            {"param": "user_envs:GAIN", "dist": "uniform", "low": 0.7, "high": 1.3},
        ]
    },
    "source_effects": [{"type": "user_envs:MotorSlip", "prob": [0.0, 0.2]}],
}


def set_point_state(env: PointMass, obs: Array) -> None:
    """A task's `state_from_obs` for the point mass: its observation is its whole state."""
    env._state = np.asarray(obs, dtype=np.float64).copy()


def wrong_pendulum_state(env: Any, obs: Array) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """A broken `state_from_obs` for InvertedPendulum: three joint positions where the model has two."""
    return np.zeros(3), np.zeros(2)


class GoalPointMass(PointMass):
    """The point mass sent to `goal` instead of the origin: another task of the same robot."""

    def __init__(self, goal: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.goal = float(goal)

    def step(self, action: Array) -> tuple[Array, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, _, terminated, truncated, info = super().step(action)
        force = self.gain * float(np.clip(action, -1.0, 1.0)[0])
        return obs, -abs(float(obs[0]) - self.goal) - 0.01 * force**2, terminated, truncated, info


class PlanarPointMass(gym.Env[Array, Array]):
    """A point mass in the plane: obs (x, y, vx, vy), two forces in [-2, 2]; to the origin."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, dt: float = 0.05) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-2.0, 2.0, shape=(2,), dtype=np.float32)
        self.dt = dt
        self._state = np.zeros(4)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Array, dict]:
        super().reset(seed=seed)
        self._state = self.np_random.uniform(-1.0, 1.0, size=4)
        return self._state.astype(np.float32), {}

    def step(self, action: Array) -> tuple[Array, SupportsFloat, bool, bool, dict[str, Any]]:
        force = np.clip(np.asarray(action, dtype=np.float64), -2.0, 2.0)
        pos, vel = self._state[:2], self._state[2:] + self.dt * force
        self._state = np.concatenate([pos + self.dt * vel, vel])
        reward = -float(np.abs(self._state[:2]).sum()) - 0.01 * float(force @ force)
        return self._state.astype(np.float32), reward, False, False, {}


SLIDER_XML = """
<mujoco>
  <worldbody>
    <body name="cart">
      <joint name="slide" type="slide" axis="1 0 0" damping="0.1"/>
      <geom type="box" size="0.1 0.1 0.1" mass="1"/>
    </body>
  </worldbody>
  <actuator>
    <general name="motor" joint="slide" dyntype="filter" dynprm="0.2" gear="5"
             ctrllimited="true" ctrlrange="-1 1"/>
  </actuator>
</mujoco>
"""


class FilteredSlider(MujocoEnv):
    """A MuJoCo cart on a rail whose motor force follows its command through a first-order filter: the
    filter's activation is state that the observation (position, velocity) does not show."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 250}

    def __init__(self, **kwargs: Any) -> None:
        space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float64)
        super().__init__("", 2, observation_space=space, **kwargs)

    def _initialize_simulation(self) -> tuple[mujoco.MjModel, mujoco.MjData]:
        model = mujoco.MjModel.from_xml_string(SLIDER_XML)
        return model, mujoco.MjData(model)

    def _get_obs(self) -> NDArray[np.float64]:
        return np.concatenate([self.data.qpos, self.data.qvel])

    def step(self, action: Array) -> tuple[NDArray[np.float64], SupportsFloat, bool, bool, dict[str, Any]]:
        self.do_simulation(action, self.frame_skip)
        obs = self._get_obs()
        return obs, -abs(float(obs[0])), False, False, {}

    def reset_model(self) -> NDArray[np.float64]:
        self.set_state(self.init_qpos, self.init_qvel)
        return self._get_obs()


def slider_state(env: Any, obs: Array) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """`state_from_obs` for `FilteredSlider`: the joint state it observes."""
    return np.asarray(obs[:1], dtype=np.float64), np.asarray(obs[1:2], dtype=np.float64)
