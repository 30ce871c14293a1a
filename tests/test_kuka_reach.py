"""KukaReachEnv: gym contract, determinism, task semantics and the physics parameter interface."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pybullet as p
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from gymnasium.wrappers import TimeLimit
from numpy.typing import NDArray
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from envs.kuka_reach import PARAM_NAMES, KukaReachEnv


@pytest.fixture
def env() -> Iterator[KukaReachEnv]:
    kuka = KukaReachEnv()
    yield kuka
    kuka.close()


def rollout(
    env: KukaReachEnv, seed: int = 1, steps: int = 20, action: NDArray[np.float32] | None = None
) -> NDArray:
    """Observations after each of `steps` actions: `action` if given, else a fixed random sequence."""
    env.reset(seed=seed)
    rng = np.random.default_rng(0)
    out = []
    for _ in range(steps):
        a = rng.uniform(-1, 1, 7).astype(np.float32) if action is None else action
        out.append(env.step(a)[0])
    return np.array(out)


def ee(obs: NDArray) -> NDArray:
    return obs[..., 14:17]


# ---------------------------------------------------------------- contract
def test_gymnasium_and_sb3_checkers_pass() -> None:
    wrapped = TimeLimit(KukaReachEnv(), 100)
    gym_check_env(wrapped.unwrapped, skip_render_check=True)
    sb3_check_env(wrapped)
    wrapped.close()


def test_spaces_layout(env: KukaReachEnv) -> None:
    assert env.action_space.shape == (7,) and env.action_space.dtype == np.float32
    assert env.observation_space.shape == (23,) and env.observation_space.dtype == np.float32
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.float32 and env.observation_space.contains(obs)
    np.testing.assert_allclose(obs[20:23], obs[17:20] - obs[14:17], atol=1e-6)
    np.testing.assert_allclose(info["distance"], np.linalg.norm(obs[20:23]), rtol=1e-5)


def test_time_limit_truncates_not_terminates() -> None:
    wrapped = TimeLimit(KukaReachEnv(), 100)
    wrapped.reset(seed=0)
    for step in range(1, 101):
        _, _, terminated, truncated, _ = wrapped.step(np.zeros(7, np.float32))
        assert not terminated and truncated == (step == 100)
    wrapped.close()


def test_close_twice_is_safe() -> None:
    kuka = KukaReachEnv()
    kuka.close()
    kuka.close()


def test_rejects_unknown_render_mode() -> None:
    with pytest.raises(ValueError, match="render_mode"):
        KukaReachEnv(render_mode="human")


def test_rgb_array_render(env: KukaReachEnv) -> None:
    kuka = KukaReachEnv(render_mode="rgb_array", image_size=32)
    kuka.reset(seed=0)
    frame = kuka.render()
    kuka.close()
    assert frame is not None and frame.dtype == np.uint8 and frame.shape == (32, 32, 3)
    assert frame.std() > 0  # not a blank image
    assert env.render() is None  # no render mode


def test_step_is_fast(env: KukaReachEnv) -> None:
    env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(200):
        env.step(env.action_space.sample())
    assert time.perf_counter() - start < 2.0  # about 5000 steps/s on a laptop CPU


# ---------------------------------------------------------------- seeding
def test_same_seed_same_trajectory(env: KukaReachEnv) -> None:
    other = KukaReachEnv()
    first = rollout(env, seed=3)
    np.testing.assert_array_equal(first, rollout(other, seed=3))
    np.testing.assert_array_equal(first, rollout(env, seed=3))  # same env, after other episodes
    other.close()


def test_different_seeds_different_targets(env: KukaReachEnv) -> None:
    targets = {tuple(env.reset(seed=s)[0][17:20]) for s in range(5)}
    assert len(targets) == 5


# ---------------------------------------------------------------- task
def test_success_when_target_at_end_effector(env: KukaReachEnv) -> None:
    obs, info = env.reset(seed=2)
    assert not info["is_success"] or info["distance"] < env.success_distance
    obs, info = env.reset(seed=2, options={"target_position": ee(obs)})
    assert info["is_success"] and info["distance"] < 1e-6
    _, reward, terminated, _, info = env.step(np.zeros(7, np.float32))
    assert info["is_success"] and not terminated and reward > -0.01


def test_reward_higher_when_closer(env: KukaReachEnv) -> None:
    obs, _ = env.reset(seed=2)
    at_ee = ee(obs)
    rewards = []
    for offset in (0.0, 0.1, 0.3):
        env.reset(seed=2, options={"target_position": at_ee + np.array([0.0, 0.0, offset])})
        _, reward, _, _, info = env.step(np.zeros(7, np.float32))
        rewards.append(reward)
    assert rewards[0] > rewards[1] > rewards[2]
    assert info["distance"] == pytest.approx(0.3, abs=0.01) and not info["is_success"]


def test_action_penalty(env: KukaReachEnv) -> None:
    env.reset(seed=2)
    _, reward, _, _, info = env.step(np.ones(7, np.float32))
    assert reward == pytest.approx(-info["distance"] - 7e-3)


def test_reset_rejects_bad_options(env: KukaReachEnv) -> None:
    with pytest.raises(ValueError, match="unknown keys"):
        env.reset(options={"goal": [0.5, 0.0, 0.4]})
    with pytest.raises(ValueError, match="target_position"):
        env.reset(options={"target_position": [9.0, 0.0, 0.4]})


# ---------------------------------------------------------------- physics parameters
def test_nominal_values(env: KukaReachEnv) -> None:
    links = tuple(f"lbr_iiwa_link_{i}" for i in range(1, 8))
    joints = tuple(f"lbr_iiwa_joint_{i}" for i in range(1, 8))
    assert env.param_names() == PARAM_NAMES
    assert env.element_names("body_mass") == links == env.element_names("friction")
    assert env.element_names("joint_damping") == joints == env.element_names("actuator_gain")
    np.testing.assert_allclose(env.get_param("body_mass"), [4, 4, 3, 2.7, 1.7, 1.8, 0.3])
    np.testing.assert_allclose(env.get_param("actuator_gain"), np.full(7, 300.0))
    np.testing.assert_allclose(env.get_param("joint_damping"), np.full(7, 0.5))
    np.testing.assert_allclose(env.get_param("gravity"), [0, 0, -9.81])
    np.testing.assert_allclose(env.get_param("timestep"), [1 / 240])
    np.testing.assert_allclose(env.get_param("frame_skip"), [4])
    for name in PARAM_NAMES:
        value = env.get_param(name)
        assert value.dtype == np.float64 and value.shape == (len(env.element_names(name)),)


def changed(env: KukaReachEnv, name: str) -> NDArray[np.float64]:
    if name == "gravity":
        return np.array([0.5, -0.2, -7.0])
    if name == "frame_skip":
        return np.array([6.0])
    return env.get_param(name) * 1.3


@pytest.mark.parametrize("name", PARAM_NAMES)
def test_round_trip_persists_across_reset(env: KukaReachEnv, name: str) -> None:
    values = changed(env, name)
    env.set_param(name, values)
    np.testing.assert_allclose(env.get_param(name), values)
    env.reset(seed=0)
    env.step(np.zeros(7, np.float32))
    np.testing.assert_allclose(env.get_param(name), values)
    env.get_param(name)[0] = -1.0  # a copy: callers cannot corrupt the cache
    np.testing.assert_allclose(env.get_param(name), values)


def test_pybullet_holds_the_set_values(env: KukaReachEnv) -> None:
    """Masses, inertias, friction and physics engine settings are really in PyBullet, after a reset."""
    robot, cid = env._robot, env._cid
    inertia0 = np.array(p.getDynamicsInfo(robot, 1, physicsClientId=cid)[2])
    env.set_param("body_mass", env.get_param("body_mass") * 2.0)
    env.set_param("body_mass", env.get_param("body_mass") * 1.5)  # relative to nominal: no compounding
    env.set_param("friction", np.full(7, 0.9))
    env.set_param("timestep", np.array([1 / 120]))
    env.reset(seed=0)
    mass, friction, inertia = p.getDynamicsInfo(robot, 1, physicsClientId=cid)[:3]
    assert mass == pytest.approx(12.0) and friction == pytest.approx(0.9)
    np.testing.assert_allclose(inertia, inertia0 * 3.0)
    engine = p.getPhysicsEngineParameters(physicsClientId=cid)
    assert engine["fixedTimeStep"] == pytest.approx(1 / 120)


@pytest.mark.parametrize(
    ("name", "values"),
    [
        ("body_mass", np.full(7, 40.0)),  # gravity loads saturate the 300 N*m motors
        ("gravity", np.zeros(3)),
        ("timestep", np.array([1 / 120])),
        ("frame_skip", np.array([8.0])),
    ],
)
def test_params_change_dynamics(env: KukaReachEnv, name: str, values: NDArray[np.float64]) -> None:
    nominal = rollout(env)
    env.set_param(name, values)
    assert np.abs(ee(rollout(env)) - ee(nominal)).max() > 5e-3


def test_lower_actuator_gain_slows_motion(env: KukaReachEnv) -> None:
    turn = np.zeros(7, np.float32)
    turn[0] = 1.0  # joint 1 has a vertical axis: gravity does not act on it
    strong = rollout(env, action=turn, steps=10)[-1, 0]
    env.set_param("actuator_gain", np.full(7, 10.0))
    weak = rollout(env, action=turn, steps=10)[-1, 0]
    start = env.reset(seed=1)[0][0]
    assert 0 < weak - start < 0.5 * (strong - start)


def test_joint_damping_matters_when_motors_saturate(env: KukaReachEnv) -> None:
    """Damping is an explicit torque; the position motors cancel it unless their force limit binds."""
    nominal = rollout(env)
    env.set_param("joint_damping", np.full(7, 0.05))
    assert np.abs(ee(rollout(env)) - ee(nominal)).max() < 1e-3  # strong motors: barely visible
    env.set_param("actuator_gain", np.full(7, 30.0))
    weak = rollout(env)
    env.set_param("joint_damping", np.full(7, 0.5))
    assert np.abs(ee(rollout(env)) - ee(weak)).max() > 1e-3


def test_frame_skip_rounds_to_int(env: KukaReachEnv) -> None:
    env.set_param("frame_skip", np.array([2.6]))
    np.testing.assert_array_equal(env.get_param("frame_skip"), [3.0])


@pytest.mark.parametrize(
    ("name", "values", "match"),
    [
        ("mass", np.ones(7), "unknown physics parameter 'mass'.*body_mass"),
        ("body_mass", np.ones(6), "shape"),
        ("gravity", np.ones((1, 3)), "shape"),
        ("body_mass", np.zeros(7), "> 0"),
        ("friction", np.full(7, -0.1), ">= 0"),
        ("timestep", np.array([0.0]), "> 0"),
        ("frame_skip", np.array([0.4]), ">= 1"),
        ("gravity", np.array([0.0, 0.0, np.nan]), "finite"),
    ],
)
def test_set_param_rejects_bad_input(env: KukaReachEnv, name: str, values: NDArray, match: str) -> None:
    before = {n: env.get_param(n) for n in PARAM_NAMES}
    with pytest.raises(ValueError, match=match):
        env.set_param(name, values)
    for n in PARAM_NAMES:
        np.testing.assert_array_equal(env.get_param(n), before[n])


def test_unknown_param_in_getters(env: KukaReachEnv) -> None:
    with pytest.raises(ValueError, match="allowed"):
        env.get_param("damping")
    with pytest.raises(ValueError, match="allowed"):
        env.element_names("damping")
