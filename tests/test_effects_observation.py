"""ObservationNoise, ObservationDelay, DroppedObservation and StuckObservation against CounterEnv.

CounterEnv observes its step counter t, so any deviation of the returned observation from t is
the effect's doing.
"""

from __future__ import annotations

import numpy as np
import pytest
from fakes import CounterEnv

from simreal.simulation.effects import (
    INFO_KEY,
    DroppedObservation,
    ObservationDelay,
    ObservationNoise,
    StuckObservation,
)

N = 10_000
ACTION = np.zeros(2, dtype=np.float32)


def rollout(env: DroppedObservation | StuckObservation, steps: int) -> np.ndarray:
    """The observations returned by `steps` steps, stacked."""
    return np.array([env.step(ACTION)[0] for _ in range(steps)])


def binomial_ok(count: int, n: int, p: float) -> bool:
    """`count` successes out of `n` is within 4.5 standard deviations of Binomial(n, p)."""
    return abs(count - n * p) <= 4.5 * np.sqrt(n * p * (1 - p)) + 1e-9


@pytest.mark.parametrize("k", [0, 1, 2, 3, 4])
def test_observation_delay_returns_the_observation_from_k_steps_ago(k: int) -> None:
    env = ObservationDelay(CounterEnv(obs_dim=2), steps=k)
    for seed in (0, 1):  # second episode: the buffer restarts from the new reset observation
        obs, info = env.reset(seed=seed)
        assert info[INFO_KEY] == {"observation_delay.steps": float(k)}
        np.testing.assert_array_equal(obs, [0.0, 0.0])
        for t in range(1, 15):
            obs, *_ = env.step(env.action_space.sample())
            np.testing.assert_array_equal(obs, np.full(2, max(t - k, 0)))


def test_observation_noise_has_the_declared_sigma() -> None:
    env = ObservationNoise(CounterEnv(obs_dim=4, max_steps=N), std=0.1)
    env.reset(seed=0)
    noise = np.array([env.step(env.action_space.sample())[0] - (t + 1) for t in range(5_000)])
    assert noise.mean() == pytest.approx(0.0, abs=0.005)
    assert noise.std() == pytest.approx(0.1, rel=0.03)


def test_observation_noise_bias_is_constant_within_and_varies_across_episodes() -> None:
    env = ObservationNoise(CounterEnv(obs_dim=3), std=0.0, bias_std=0.5)
    biases = []
    for seed in range(600):
        obs, _ = env.reset(seed=seed)
        bias = obs - 0.0
        for t in range(1, 4):
            obs, *_ = env.step(env.action_space.sample())
            np.testing.assert_allclose(obs - t, bias, atol=1e-5)
        biases.append(bias)
    biases_array = np.array(biases)
    assert biases_array.std() == pytest.approx(0.5, rel=0.06)
    assert len({tuple(b) for b in biases}) == len(biases)


def test_observation_noise_keeps_dtype_and_clips_only_into_a_bounded_space() -> None:
    bounded = ObservationNoise(CounterEnv(obs_bounds=(-1.0, 1.0)), std=5.0)
    obs, _ = bounded.reset(seed=0)
    returned = [obs] + [bounded.step(bounded.action_space.sample())[0] for _ in range(200)]
    assert all(o.dtype == np.float32 and o in bounded.observation_space for o in returned)
    assert min(o.min() for o in returned) == -1.0 and max(o.max() for o in returned) == 1.0

    unbounded = ObservationNoise(CounterEnv(), std=5.0)
    unbounded.reset(seed=0)
    values = np.array([unbounded.step(unbounded.action_space.sample())[0] for _ in range(200)])
    assert values.min() < -1.0 and values.max() > 200.0


@pytest.mark.parametrize("prob", [0.0, 0.05, 0.3, 1.0])
def test_dropped_observations_occur_at_the_declared_rate(prob: float) -> None:
    env = DroppedObservation(CounterEnv(max_steps=N), prob=prob)
    _, info = env.reset(seed=3)
    assert info[INFO_KEY] == {"dropped_observation.prob": prob}
    returned = rollout(env, N)
    counter = np.arange(1, N + 1)[:, None]
    dropped = np.all(returned == 0.0, axis=1)
    assert np.all(returned[~dropped] == counter[~dropped])  # everything else is untouched
    if prob == 0.0:
        assert dropped.sum() == 0
    elif prob == 1.0:
        assert dropped.sum() == N
    else:
        assert binomial_ok(int(dropped.sum()), N, prob)


def test_dropped_observation_is_zeros_clipped_into_the_space() -> None:
    env = DroppedObservation(CounterEnv(obs_bounds=(1.0, 5.0)), prob=1.0)
    env.reset(seed=0)
    obs, *_ = env.step(env.action_space.sample())
    np.testing.assert_array_equal(obs, [1.0, 1.0, 1.0])
    assert obs.dtype == np.float32


@pytest.mark.parametrize("prob", [0.0, 0.05, 0.3, 1.0])
def test_stuck_observations_occur_at_the_declared_rate(prob: float) -> None:
    env = StuckObservation(CounterEnv(max_steps=N), prob=prob)
    first, _ = env.reset(seed=5)
    returned = rollout(env, N)
    previous = np.vstack([first, returned[:-1]])
    counter = np.arange(1, N + 1)[:, None]
    stuck = np.all(returned == previous, axis=1)
    assert np.all(returned[~stuck] == counter[~stuck])  # a fresh reading whenever not stuck
    if prob == 0.0:
        assert stuck.sum() == 0
    elif prob == 1.0:
        assert stuck.sum() == N and np.all(returned == 0.0)  # the reset reading forever
    else:
        assert binomial_ok(int(stuck.sum()), N, prob)


def test_stuck_observation_returns_fresh_arrays() -> None:
    env = StuckObservation(CounterEnv(), prob=1.0)
    first, _ = env.reset(seed=0)
    second, *_ = env.step(env.action_space.sample())
    third, *_ = env.step(env.action_space.sample())
    assert not np.shares_memory(first, second) and not np.shares_memory(second, third)
