"""ControlJitter against CounterEnv: how often and how long actions are held, and termination."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from fakes import CounterEnv

from simreal.simulation.effects import INFO_KEY, ControlJitter

N = 10_000


def inner_steps_per_call(env: ControlJitter, inner: CounterEnv, calls: int) -> list[int]:
    """Inner env steps consumed by each wrapper step; checks reward sum and latest observation."""
    counts = []
    for _ in range(calls):
        before = inner.steps
        obs, reward, *_ = env.step(np.array([0.5, -0.5], dtype=np.float32))
        counts.append(inner.steps - before)
        assert float(reward) == counts[-1]  # CounterEnv pays 1.0 per inner step
        np.testing.assert_array_equal(obs, np.full(3, inner.steps))
    return counts


def test_extra_steps_happen_at_the_declared_rate() -> None:
    inner = CounterEnv(max_steps=3 * N)
    env = ControlJitter(inner, max_extra_steps=1, prob=0.2)
    _, info = env.reset(seed=0)
    assert info[INFO_KEY] == {"control_jitter.max_extra_steps": 1.0, "control_jitter.prob": 0.2}
    counts = inner_steps_per_call(env, inner, N)
    held = sum(c == 2 for c in counts)
    assert set(counts) == {1, 2}
    assert abs(held - 0.2 * N) <= 4.5 * np.sqrt(N * 0.2 * 0.8)
    assert all(np.array_equal(a, [0.5, -0.5]) for a in inner.actions)


def test_extra_steps_are_uniform_on_one_to_max() -> None:
    inner = CounterEnv(max_steps=5 * N)
    env = ControlJitter(inner, max_extra_steps=3, prob=1.0)
    env.reset(seed=1)
    counts = Counter(c - 1 for c in inner_steps_per_call(env, inner, 3_000))
    assert set(counts) == {1, 2, 3}
    assert all(abs(n - 1_000) <= 4.5 * np.sqrt(3_000 * (1 / 3) * (2 / 3)) for n in counts.values())


@pytest.mark.parametrize("max_extra", [0, 3])
def test_prob_zero_or_no_extra_steps_means_one_inner_step_per_call(max_extra: int) -> None:
    inner = CounterEnv()
    env = ControlJitter(inner, max_extra_steps=max_extra, prob=0.0 if max_extra else 1.0)
    env.reset(seed=0)
    assert inner_steps_per_call(env, inner, 200) == [1] * 200


@pytest.mark.parametrize(("terminate_at", "max_steps"), [(7, 1000), (None, 7)])
def test_holding_stops_at_termination_or_truncation(terminate_at: int | None, max_steps: int) -> None:
    inner = CounterEnv(terminate_at=terminate_at, max_steps=max_steps)  # raises if stepped past the end
    env = ControlJitter(inner, max_extra_steps=5, prob=1.0)
    for seed in range(20):
        env.reset(seed=seed)
        done, total = False, 0.0
        while not done:
            _, reward, terminated, truncated, info = env.step(np.zeros(2, dtype=np.float32))
            total += float(reward)
            done = terminated or truncated
        assert inner.steps == 7 and total == 7.0 and info["t"] == 7
        assert terminated == (terminate_at is not None) and truncated == (terminate_at is None)
