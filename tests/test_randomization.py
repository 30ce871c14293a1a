"""Domain randomization: ranges respected, nominal restored, no compounding, seeded, clear errors."""

from __future__ import annotations

import re

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import simreal  # noqa: F401 - registers the simreal/ ids
from simreal.schema import ConfigError, parse
from simreal.simulation.physics import MujocoParams, physics_of
from simreal.simulation.randomization import RandomizationSpec, RandomizeDynamics


def _spec(*params: dict[str, object], every: int | None = None) -> RandomizationSpec:
    return parse(RandomizationSpec, {"params": list(params), "resample_every_steps": every}, "test.yaml")


MIXED = (
    {"param": "body_mass", "names": ["pole"], "dist": "log_uniform", "low": 0.5, "high": 2.0},
    {"param": "friction", "dist": "uniform", "low": 0.7, "high": 1.3},
    {"param": "joint_damping", "dist": "normal", "mean": 1.0, "std": 0.3, "low": 0.5, "high": 1.5},
    {"param": "actuator_gain", "dist": "choice", "values": [0.8, 1.2]},
    {"param": "gravity", "names": ["z"], "dist": "uniform", "low": -1.0, "high": 1.0, "mode": "add"},
    {"param": "timestep", "dist": "uniform", "low": 0.9, "high": 1.1},
    {"param": "frame_skip", "dist": "choice", "values": [1, 2, 3], "mode": "abs"},
)


def _pendulum(spec: RandomizationSpec) -> RandomizeDynamics:
    return RandomizeDynamics(gym.make("InvertedPendulum-v5"), spec)  # Gymnasium's own env, not ours


def _model_arrays(env: gym.Env) -> dict[str, np.ndarray]:
    m = env.unwrapped.model
    return {
        "mass": m.body_mass.copy(),
        "inertia": m.body_inertia.copy(),
        "friction": m.geom_friction.copy(),
        "damping": m.dof_damping.copy(),
        "gain": m.actuator_gainprm.copy(),
        "bias": m.actuator_biasprm.copy(),
        "gravity": m.opt.gravity.copy(),
        "timestep": np.array([m.opt.timestep]),
        "frame_skip": np.array([env.unwrapped.frame_skip]),
    }


@settings(max_examples=15, deadline=None)
@given(low=st.floats(0.1, 2.0), width=st.floats(0.0, 3.0), seed=st.integers(0, 2**31 - 1))
def test_samples_stay_inside_declared_range(low: float, width: float, seed: int) -> None:
    high = low + width
    env = _pendulum(
        _spec(
            {"param": "body_mass", "dist": "uniform", "low": low, "high": high},
            {"param": "friction", "dist": "log_uniform", "low": low, "high": high, "mode": "abs"},
        )
    )
    nominal = env.nominal["body_mass"]
    _, info = env.reset(seed=seed)
    for _ in range(3):
        _, info = env.reset()
        masses = env.unwrapped.model.body_mass[1:]
        assert np.all(masses >= nominal * low * (1 - 1e-12)) and np.all(
            masses <= nominal * high * (1 + 1e-12)
        )
        friction = env.unwrapped.model.geom_friction[:, 0]
        assert np.all(friction >= low * (1 - 1e-12)) and np.all(friction <= high * (1 + 1e-12))
        assert set(info["dynamics"]) == {
            "body_mass/cart",
            "body_mass/pole",
            "friction/rail",
            "friction/cart",
            "friction/cpole",
        }
    env.close()


def test_disabling_restores_nominal_exactly_and_samples_do_not_compound() -> None:
    env = _pendulum(_spec(*MIXED))
    before = _model_arrays(env)
    env.reset(seed=0)
    first = env.current
    for _ in range(50):  # compounding would drift far outside [0.5, 2] x nominal within 50 resets
        env.reset()
        assert 0.5 * 5.0186 <= env.unwrapped.model.body_mass[2] <= 2.0 * 5.0187
    assert env.current != first
    env.set_enabled(False)
    after = _model_arrays(env)
    for key in before:
        np.testing.assert_array_equal(before[key], after[key], err_msg=key)
    env.reset()
    np.testing.assert_array_equal(_model_arrays(env)["mass"], before["mass"])


def test_mass_scales_inertia_and_recomputes_constants() -> None:
    env = _pendulum(_spec({"param": "body_mass", "names": ["pole"], "value": 2.0}))
    model = env.unwrapped.model
    inertia0 = model.body_inertia[2].copy()
    env.reset(seed=0)
    np.testing.assert_allclose(model.body_inertia[2], 2.0 * inertia0)
    np.testing.assert_allclose(model.body_subtreemass[2], model.body_mass[2])  # mj_setConst ran
    data = mujoco.MjData(model)
    mujoco.mj_setConst(model, data)
    np.testing.assert_allclose(model.body_subtreemass[0], model.body_mass.sum())


def test_actuator_gain_scales_force_and_frame_skip_changes_dt() -> None:
    env = _pendulum(
        _spec({"param": "actuator_gain", "value": 0.5}, {"param": "frame_skip", "value": 3, "mode": "abs"})
    )
    env.reset(seed=0)
    assert env.unwrapped.frame_skip == 3
    assert env.unwrapped.dt == pytest.approx(3 * env.unwrapped.model.opt.timestep)
    env.step(np.array([1.0], dtype=np.float32))
    assert env.unwrapped.data.actuator_force[0] == pytest.approx(0.5)  # nominal gain 1 x ctrl 1, halved


def test_same_seed_same_sequence_different_seeds_differ() -> None:
    def sequence(seed: int) -> list[dict[str, float]]:
        env = _pendulum(_spec(*MIXED))
        out = [env.reset(seed=seed)[1]["dynamics"]]
        out += [env.reset()[1]["dynamics"] for _ in range(4)]
        return out

    assert sequence(7) == sequence(7)
    assert sequence(7) != sequence(8)


def test_resample_every_n_steps() -> None:
    env = _pendulum(_spec({"param": "body_mass", "dist": "uniform", "low": 0.5, "high": 2.0}, every=3))
    _, info = env.reset(seed=0)
    values = [info["dynamics"]["body_mass/pole"]]
    for _ in range(6):
        values.append(env.step(np.zeros(1, dtype=np.float32))[4]["dynamics"]["body_mass/pole"])
    assert values[0] == values[1] == values[2] != values[3] == values[4] == values[5] != values[6]


def test_works_on_pybullet_task() -> None:
    env = RandomizeDynamics(
        gym.make("simreal/KukaReach-v0"),
        _spec({"param": "actuator_gain", "dist": "uniform", "low": 0.5, "high": 0.9}),
    )
    physics = physics_of(env)
    nominal = physics.get_param("actuator_gain").copy()
    env.reset(seed=0)
    ratio = physics.get_param("actuator_gain") / nominal
    assert np.all((ratio >= 0.5) & (ratio <= 0.9))
    env.set_enabled(False)
    np.testing.assert_array_equal(physics.get_param("actuator_gain"), nominal)
    env.close()


def test_works_on_any_gymnasium_mujoco_env() -> None:
    env = RandomizeDynamics(
        gym.make("Hopper-v5"), _spec({"param": "body_mass", "dist": "uniform", "low": 0.8, "high": 1.2})
    )
    assert isinstance(physics_of(env), MujocoParams)
    env.reset(seed=0)
    env.close()


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ({"param": "mass", "value": 1.0}, "params.0.param"),
        ({"param": "body_mass", "names": ["polex"], "value": 1.0}, "names: ['polex'] match no body_mass"),
        ({"param": "body_mass", "dist": "uniform", "low": 2.0, "high": 1.0}, "low: 2.0 > high"),
        (
            {"param": "friction", "dist": "normal", "mean": 1, "std": 1, "low": -1, "high": 2},
            "allowed: friction >= 0",
        ),
        ({"param": "body_mass", "dist": "uniform", "low": 0.0, "high": 1.0}, "allowed: body_mass > 0"),
        ({"param": "timestep", "value": 0.0, "mode": "abs"}, "allowed: timestep > 0"),
        (
            {"param": "body_mass", "dist": "uniform", "low": 0.5, "high": 1.0, "values": [1]},
            "values: not used",
        ),
        ({"param": "body_mass", "dist": "gamma", "low": 0.5, "high": 1.0}, "dist"),
        (
            {"param": "body_mass", "dist": "uniform", "low": 0.5, "high": 1.0, "bodies": ["pole"]},
            "unknown key",
        ),
    ],
)
def test_bad_specs_fail_at_construction_with_key_path(param: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        _pendulum(_spec(param))
    assert "\n" not in str(err.value)
