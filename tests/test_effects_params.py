"""Fixed-or-range parameters: validation and per-episode draws (property tests)."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import CounterEnv
from hypothesis import given, settings
from hypothesis import strategies as st

from simreal.simulation.effects import INFO_KEY, ActionDelay, ControlJitter, ObservationNoise, Param

unit = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def float_ranges(draw: st.DrawFn) -> tuple[float, float]:
    a, b = draw(unit), draw(unit)
    return (min(a, b), max(a, b))


@st.composite
def int_ranges(draw: st.DrawFn) -> tuple[int, int]:
    a, b = draw(st.integers(0, 8)), draw(st.integers(0, 8))
    return (min(a, b), max(a, b))


@settings(max_examples=40, deadline=None)
@given(
    std=float_ranges(),
    bias=float_ranges(),
    steps=int_ranges(),
    prob=float_ranges(),
    seed=st.integers(0, 2**31),
)
def test_drawn_values_stay_in_range_and_are_reported(
    std: tuple[float, float],
    bias: tuple[float, float],
    steps: tuple[int, int],
    prob: tuple[float, float],
    seed: int,
) -> None:
    noisy = ObservationNoise(CounterEnv(), std=std, bias_std=bias)
    env = ControlJitter(ActionDelay(noisy, steps=steps), max_extra_steps=steps, prob=prob)
    for episode in range(3):
        _, info = env.reset(seed=seed + episode)
        drawn = info[INFO_KEY]
        assert std[0] <= drawn["observation_noise.std"] <= std[1]
        assert bias[0] <= drawn["observation_noise.bias_std"] <= bias[1]
        assert prob[0] <= drawn["control_jitter.prob"] <= prob[1]
        for key in ("action_delay.steps", "control_jitter.max_extra_steps"):
            assert steps[0] <= drawn[key] <= steps[1] and drawn[key].is_integer()


def test_integer_ranges_are_inclusive_and_fixed_values_consume_no_randomness() -> None:
    rng = np.random.default_rng(0)
    steps = Param.of("steps", [1, 3], integer=True)
    assert {steps.draw(rng) for _ in range(200)} == {1.0, 2.0, 3.0}
    state = rng.bit_generator.state
    assert Param.of("std", 0.4).draw(rng) == 0.4 and Param.of("std", [0.4, 0.4]).draw(rng) == 0.4
    assert rng.bit_generator.state == state


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1.0, "x must be >= 0, got -1"),
        ([0.5, 0.1], r"x range needs low <= high, got \[0.5, 0.1\]"),
        ([0.1], r"x must be a number or a \[low, high\] pair"),
        (True, r"x must be a number or a \[low, high\] pair, got True"),
        (float("inf"), "x must be finite"),
        (np.float32(-2), "x must be >= 0"),
    ],
)
def test_param_errors_name_the_parameter(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Param.of("x", value, ge=0.0)


def test_numpy_scalars_are_accepted() -> None:
    assert Param.of("steps", np.int64(2), integer=True).as_value() == 2
    assert Param.of("std", np.float32(0.5)).as_value() == 0.5
