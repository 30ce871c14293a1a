"""ActionHistory: the last k actions follow the observation, oldest first, neutral after reset."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import CounterEnv
from gymnasium.utils.env_checker import check_env

from simreal.simulation.observation import ActionHistory, ObservationConfig, observation_wrapper


def test_history_holds_the_last_k_actions_in_order() -> None:
    env = ActionHistory(CounterEnv(obs_dim=3, act_dim=2), steps=3)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (3 + 3 * 2,) and obs.dtype == np.float32
    np.testing.assert_array_equal(obs[3:], np.zeros(6))
    actions = [np.array([0.1 * i, -0.1 * i], dtype=np.float32) for i in range(1, 6)]
    for t, action in enumerate(actions, start=1):
        obs, *_ = env.step(action)
        np.testing.assert_array_equal(obs[:3], np.full(3, t))
        expected = [np.zeros(2, dtype=np.float32)] * 3 + actions[:t]
        np.testing.assert_array_equal(obs[3:], np.concatenate(expected[-3:]))
    obs, _ = env.reset()
    np.testing.assert_array_equal(obs[3:], np.zeros(6))


def test_neutral_history_is_inside_the_space_and_checkers_pass() -> None:
    inner = CounterEnv(obs_dim=2, act_dim=1, action_low=0.5, action_high=1.0, obs_bounds=(0, 2000))
    env = ActionHistory(inner, 2)
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs[2:], [0.5, 0.5])
    assert env.observation_space.contains(obs)
    check_env(env, skip_render_check=True)


def test_config_builds_the_wrapper_or_nothing() -> None:
    assert observation_wrapper(ObservationConfig()) is None
    wrap = observation_wrapper(ObservationConfig(action_history=2))
    assert wrap is not None and isinstance(wrap(CounterEnv()), ActionHistory)
    with pytest.raises(ValueError, match="action_history"):
        ActionHistory(CounterEnv(), 0)
