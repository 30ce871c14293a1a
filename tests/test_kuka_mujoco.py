"""The cross-engine KUKA target: the PyBullet task's arm in MuJoCo, aligned where the engines allow."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pybullet as p
import pytest

from envs.kuka_mujoco import KukaReachMujocoEnv
from envs.kuka_reach import KukaReachEnv
from simreal.simulation.physics import physics_of

EE_TOLERANCE = 1e-5  # m: forward kinematics of the same URDF, two engines


@pytest.fixture
def engines() -> tuple[KukaReachMujocoEnv, KukaReachEnv]:
    mj, pb = KukaReachMujocoEnv(), KukaReachEnv()
    yield mj, pb
    mj.close()
    pb.close()


def _set_joints(mj: KukaReachMujocoEnv, pb: KukaReachEnv, q: np.ndarray) -> None:
    mj.set_state(q, np.zeros(7))
    for j, value in zip(pb._joints, q, strict=True):
        p.resetJointState(pb._robot, j, float(value), 0.0, physicsClientId=pb._cid)


def test_same_spaces_and_layout(engines: tuple[KukaReachMujocoEnv, KukaReachEnv]) -> None:
    mj, pb = engines
    assert mj.observation_space == pb.observation_space and mj.action_space == pb.action_space
    assert mj.dt == pytest.approx(1 / 60) and mj.model.opt.timestep == pytest.approx(1 / 240)
    obs_mj, info_mj = mj.reset(seed=4)
    obs_pb, info_pb = pb.reset(seed=4)  # same seed: same home-pose noise and target
    np.testing.assert_allclose(obs_mj, obs_pb, atol=1e-6)
    assert set(info_mj) == set(info_pb) == {"distance", "is_success"}


def test_identical_joint_states_give_the_same_end_effector(
    engines: tuple[KukaReachMujocoEnv, KukaReachEnv],
) -> None:
    mj, pb = engines
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.uniform(mj._joint_lower, mj._joint_upper)
        _set_joints(mj, pb, q)
        target = rng.uniform([0.35, -0.3, 0.2], [0.7, 0.3, 0.6])
        obs_mj, _ = mj.reset(seed=0, options={"target_position": target})
        obs_pb, _ = pb.reset(seed=0, options={"target_position": target})
        _set_joints(mj, pb, q)
        import mujoco

        mujoco.mj_forward(mj.model, mj.data)
        a, _ = mj._observe()
        b, _ = pb._observe()
        np.testing.assert_allclose(a[:7], b[:7], atol=1e-6)  # joint positions
        np.testing.assert_allclose(a[14:17], b[14:17], atol=EE_TOLERANCE)  # end effector
        np.testing.assert_allclose(a[17:], b[17:], atol=EE_TOLERANCE)  # target and target - ee


def test_motors_track_like_pybullet(engines: tuple[KukaReachMujocoEnv, KukaReachEnv]) -> None:
    """Not equal - another engine - but close: within 3 cm after 50 random half-scale commands."""
    mj, pb = engines
    rng = np.random.default_rng(1)
    mj.reset(seed=1)
    pb.reset(seed=1)
    returns = np.zeros(2)
    for _ in range(50):
        action = (0.5 * rng.uniform(-1, 1, 7)).astype(np.float32)
        obs_mj, r_mj, *_ = mj.step(action)
        obs_pb, r_pb, *_ = pb.step(action)
        returns += (r_mj, r_pb)
    assert np.abs(obs_mj[14:17] - obs_pb[14:17]).max() < 0.03
    assert abs(returns[0] - returns[1]) < 0.1 * abs(returns[1])


def test_physics_parameters_mean_what_they_mean_in_pybullet(
    engines: tuple[KukaReachMujocoEnv, KukaReachEnv],
) -> None:
    mj, pb = engines
    params = physics_of(gym.make("simreal/KukaReach-Target-Mujoco-v0"))
    for name in ("body_mass", "joint_damping", "actuator_gain"):
        assert params.element_names(name) == pb.element_names(name), name
    np.testing.assert_allclose(params.get_param("body_mass"), pb.get_param("body_mass"))
    np.testing.assert_allclose(params.get_param("actuator_gain"), pb.get_param("actuator_gain"))  # 300 N m
    own = KukaReachMujocoEnv()
    physics_of(own).set_param("actuator_gain", np.full(7, 50.0))  # strength = force limit, as in PyBullet
    assert np.all(own.model.actuator_forcerange == [-50.0, 50.0])
    assert np.all(own.model.actuator_gainprm[:, 0] == 1.0)  # torque motors, unchanged


def test_pyBullet_policy_runs_on_the_mujoco_target_id() -> None:
    env = gym.make("simreal/KukaReach-Target-Mujoco-v0")
    assert isinstance(env.unwrapped, KukaReachMujocoEnv)
    obs, _ = env.reset(seed=0)
    for _ in range(100):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert truncated and not terminated and "is_success" in info  # the task's 100-step limit
