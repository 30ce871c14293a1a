"""Contract tests over every registered simreal env: checkers pass, ids match the task YAMLs."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from simreal.simulation.registry import PACKAGED
from simreal.simulation.tasks import load_task

SIMREAL_IDS = sorted(i for i in gym.registry if i.startswith("simreal/"))


def test_every_task_has_three_kinds_of_ids() -> None:
    assert len(SIMREAL_IDS) >= 4 * 3
    pybullet = [t for t in PACKAGED.values() if t.spec.env.startswith("envs.")]
    assert len(PACKAGED) - len(pybullet) >= 2 and pybullet
    for task in PACKAGED.values():
        assert task.nominal_id in gym.registry and task.randomized_id in gym.registry
        assert task.spec.targets, task.key
        for target in task.spec.targets:
            assert task.target_id(target) in gym.registry


@pytest.mark.parametrize("key", sorted(PACKAGED))
def test_registered_targets_match_yaml(key: str) -> None:
    spec = load_task(key)
    assert set(spec.targets) == set(PACKAGED[key].spec.targets)
    assert any(t.extrapolation for t in spec.targets.values()), f"{key} ships no extrapolation target"


@pytest.mark.parametrize("env_id", SIMREAL_IDS)
def test_env_passes_checkers(env_id: str) -> None:
    env = gym.make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        gym_check_env(
            env.unwrapped if env_id.endswith("-v0") and "-" not in env_id[8:-3] else env,
            skip_render_check=True,
        )
    env.close()
    env = gym.make(env_id)
    sb3_check_env(env, warn=False)
    env.close()


def _assert_same(obs_a: Any, obs_b: Any) -> None:
    """Equal observations: arrays, or Dicts (camera + joint encoders) of them, key by key."""
    if isinstance(obs_a, dict):
        assert obs_a.keys() == obs_b.keys()
        for key in obs_a:
            np.testing.assert_array_equal(obs_a[key], obs_b[key])
    else:
        np.testing.assert_array_equal(obs_a, obs_b)


@pytest.mark.parametrize("env_id", SIMREAL_IDS)
def test_seeded_reset_is_reproducible(env_id: str) -> None:
    a, b = gym.make(env_id), gym.make(env_id)
    obs_a, info_a = a.reset(seed=3)
    obs_b, info_b = b.reset(seed=3)
    _assert_same(obs_a, obs_b)
    assert info_a.get("dynamics") == info_b.get("dynamics")
    a.action_space.seed(0)
    for _ in range(5):
        action = a.action_space.sample()
        _assert_same(a.step(action)[0], b.step(action)[0])
    a.close()
    b.close()


def test_unknown_env_id_is_a_clear_error() -> None:
    with pytest.raises(gym.error.Error, match="InvertedPendulum-Nope"):
        gym.make("simreal/InvertedPendulum-Nope-v0")
