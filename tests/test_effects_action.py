"""ActionNoise, ActionDelay, ActuatorDeadZone and ActuatorSaturation against CounterEnv."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from fakes import CounterEnv

from simreal.simulation.effects import (
    INFO_KEY,
    ActionDelay,
    ActionNoise,
    ActuatorDeadZone,
    ActuatorSaturation,
    neutral_value,
)


def distinct_actions(n: int, dim: int = 2) -> list[np.ndarray]:
    return [np.full(dim, (t + 1) / (n + 1), dtype=np.float32) for t in range(n)]


@pytest.mark.parametrize("k", [0, 1, 2, 3, 4])
def test_action_delay_applies_each_action_exactly_k_steps_late(k: int) -> None:
    inner = CounterEnv()
    env = ActionDelay(inner, steps=k)
    sent = distinct_actions(12)
    for episode in range(2):  # the second episode checks that pending actions are dropped at reset
        _, info = env.reset(seed=episode)
        assert info[INFO_KEY] == {"action_delay.steps": float(k)}
        for action in sent:
            env.step(action)
        received = inner.actions
        assert len(received) == len(sent)
        for t in range(k):
            np.testing.assert_array_equal(received[t], np.zeros(2))
        for t in range(k, len(sent)):
            np.testing.assert_array_equal(received[t], sent[t - k])


def test_action_delay_neutral_is_midpoint_when_zero_is_outside_the_bounds() -> None:
    inner = CounterEnv(action_low=[-1.0, 0.5], action_high=[1.0, 1.5])
    env = ActionDelay(inner, steps=2)
    env.reset(seed=0)
    env.step(np.array([0.3, 0.7], dtype=np.float32))
    np.testing.assert_array_equal(inner.actions[0], [0.0, 1.0])
    assert neutral_value(env.action_space).dtype == np.float32  # type: ignore[arg-type]


def test_action_delay_range_is_drawn_per_episode_and_applied() -> None:
    inner = CounterEnv()
    env = ActionDelay(inner, steps=[0, 4])
    seen = set()
    for seed in range(30):
        _, info = env.reset(seed=seed)
        k = int(info[INFO_KEY]["action_delay.steps"])
        seen.add(k)
        sent = distinct_actions(6)
        for action in sent:
            env.step(action)
        assert not np.any(inner.actions[:k])
        np.testing.assert_array_equal(inner.actions[k], sent[0])
    assert seen == {0, 1, 2, 3, 4}


def test_action_noise_has_the_declared_sigma_and_stays_in_bounds() -> None:
    inner = CounterEnv(act_dim=4, max_steps=10_000)
    env = ActionNoise(inner, std=0.1)
    env.reset(seed=0)
    sent = np.full(4, 0.2, dtype=np.float32)
    for _ in range(5_000):
        env.step(sent)
    noise = np.array(inner.actions) - sent
    assert noise.mean() == pytest.approx(0.0, abs=0.005)
    assert noise.std() == pytest.approx(0.1, rel=0.03)
    assert inner.actions[0].dtype == np.float32

    env = ActionNoise(inner, std=5.0)
    env.reset(seed=1)
    for _ in range(200):
        env.step(sent)
    received = np.array(inner.actions)
    assert received.min() == -1.0 and received.max() == 1.0


def test_dead_zone_maps_small_commands_to_neutral() -> None:
    inner = CounterEnv(act_dim=3)
    env = ActuatorDeadZone(inner, threshold=0.2)
    env.reset(seed=0)
    env.step(np.array([0.19, -0.19, 0.5], dtype=np.float32))
    env.step(np.array([0.21, -0.2, -1.0], dtype=np.float32))
    np.testing.assert_array_equal(inner.actions[0], [0.0, 0.0, 0.5])
    np.testing.assert_array_equal(inner.actions[1], np.array([0.21, -0.2, -1.0], dtype=np.float32))


def test_dead_zone_is_relative_to_neutral_and_half_range() -> None:
    inner = CounterEnv(act_dim=1, action_low=1.0, action_high=3.0)  # neutral 2, half range 1
    env = ActuatorDeadZone(inner, threshold=0.5)
    env.reset(seed=0)
    for value in (1.4, 1.6, 2.4, 2.6):
        env.step(np.array([value], dtype=np.float32))
    assert [float(a[0]) for a in inner.actions] == pytest.approx([1.4, 2.0, 2.0, 2.6])


def test_dead_zone_threshold_zero_changes_nothing() -> None:
    inner = CounterEnv()
    env = ActuatorDeadZone(inner, threshold=0.0)
    env.reset(seed=0)
    env.step(np.array([1e-6, 0.0], dtype=np.float32))
    np.testing.assert_array_equal(inner.actions[0], np.array([1e-6, 0.0], dtype=np.float32))


def test_saturation_clips_to_limit_times_bounds_around_neutral() -> None:
    inner = CounterEnv(act_dim=2, action_low=[-1.0, 1.0], action_high=[1.0, 3.0])
    env = ActuatorSaturation(inner, limit=0.5)
    env.reset(seed=0)
    env.step(np.array([0.9, 2.9], dtype=np.float32))
    env.step(np.array([-0.9, 1.1], dtype=np.float32))
    env.step(np.array([0.3, 2.2], dtype=np.float32))
    np.testing.assert_allclose(inner.actions, [[0.5, 2.5], [-0.5, 1.5], [0.3, 2.2]], rtol=1e-6)


def test_saturation_limit_one_is_identity() -> None:
    inner = CounterEnv()
    env = ActuatorSaturation(inner, limit=1.0)
    env.reset(seed=0)
    action = np.array([1.0, -0.7], dtype=np.float32)
    env.step(action)
    np.testing.assert_array_equal(inner.actions[0], action)


@pytest.mark.parametrize("wrapper", [ActuatorDeadZone, ActuatorSaturation])
def test_bounded_action_space_is_required(wrapper: type) -> None:
    env = CounterEnv(action_low=-np.inf, action_high=np.inf)
    with pytest.raises(ValueError, match=f"{wrapper.__name__} needs finite action space bounds"):
        wrapper(env, 0.5)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda env: ActionNoise(env, std=-0.1), "ActionNoise: std must be >= 0, got -0.1"),
        (lambda env: ActionDelay(env, steps=-1), "ActionDelay: steps must be >= 0, got -1"),
        (lambda env: ActionDelay(env, steps=1.5), "ActionDelay: steps must be an integer"),  # type: ignore[arg-type]
        (lambda env: ActuatorDeadZone(env, threshold=1.0), r"threshold must be in \[0, 1\), got 1"),
        (lambda env: ActuatorSaturation(env, limit=0.0), r"limit must be in \(0, 1\], got 0"),
        (lambda env: ActionNoise(env, std=[0.5, 0.1]), r"std range needs low <= high, got \[0.5, 0.1\]"),
    ],
)
def test_invalid_arguments_raise_one_line_value_errors(
    make: Callable[[CounterEnv], object], message: str
) -> None:
    with pytest.raises(ValueError, match=message) as err:
        make(CounterEnv())
    assert "\n" not in str(err.value)
