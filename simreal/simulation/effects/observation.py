"""Sensor-side effects: noise, delay, dropped packets and stuck readings on Box observations.

Each wrapper changes the observation only (`observation()`, as in Gymnasium's `ObservationWrapper`);
reward, termination and info pass through untouched. Per-episode parameters are drawn at reset from
the env's `np_random` and recorded in `info["effects"]`; per-step randomness comes from the same generator.
"""

from __future__ import annotations

from collections import deque
from typing import Any, ClassVar

import numpy as np

from simreal.simulation.effects.base import (
    Array,
    BoxEnv,
    NoiseStream,
    ObservationEffect,
    float_box,
    zeros_in,
)
from simreal.simulation.effects.params import (
    NON_NEGATIVE,
    PROBABILITY,
    STEPS,
    IntScalarLike,
    Param,
    ScalarLike,
)


class ObservationNoise(ObservationEffect):
    """Gaussian sensor noise: obs + bias + white noise, cast back to the observation dtype.

    `bias` ~ N(0, bias_std) per observation component is drawn once per episode (a miscalibrated
    sensor); white noise ~ N(0, std) is drawn every step. If the space has finite bounds the result
    is clipped into it, so the observation stays a member of the space.
    """

    name = "observation_noise"
    params: ClassVar = {"std": NON_NEGATIVE, "bias_std": NON_NEGATIVE}
    std: Param
    bias_std: Param

    def __init__(self, env: BoxEnv, std: ScalarLike, bias_std: ScalarLike = 0.0) -> None:
        super().__init__(env, std=std, bias_std=bias_std)
        box = float_box(env.observation_space, "ObservationNoise", "observation")
        self._shape, self._dtype = box.shape, box.dtype
        self._clip = bool(np.isfinite(box.low).any() or np.isfinite(box.high).any())
        self._low, self._high = box.low, box.high
        self._noise: NoiseStream | None = None

    def start_episode(self, rng: np.random.Generator) -> None:
        bias_std = self.now["bias_std"]
        bias = rng.normal(0.0, bias_std, size=self._shape) if bias_std > 0 else None
        self._noise = NoiseStream(rng, self.now["std"], self._shape, self._dtype, offset=bias)

    def observation(self, obs: Array) -> Array:
        assert self._noise is not None, "ObservationNoise: call reset() before step()"
        noisy = self._noise.next()
        noisy += obs
        if self._clip:
            np.minimum(noisy, self._high, out=noisy)
            np.maximum(noisy, self._low, out=noisy)
        return noisy


class ObservationDelay(ObservationEffect):
    """Stale readings: each step returns the observation from `steps` steps ago.

    At the start of an episode the reset observation is repeated until enough steps have passed.
    `steps` may be a `[low, high]` range, drawn per episode as an integer. Observations from the
    inner env are kept by reference: like gymnasium, this assumes an env returns fresh arrays.
    """

    name = "observation_delay"
    params: ClassVar = {"steps": STEPS}
    steps: Param

    def __init__(self, env: BoxEnv, steps: IntScalarLike) -> None:
        super().__init__(env, steps=steps)
        float_box(env.observation_space, "ObservationDelay", "observation")
        self._buffer: deque[Array] = deque(maxlen=1)

    def reset_observation(self, obs: Array) -> Array:
        steps = int(self.now["steps"])
        # The reset observation is returned now and again for the next `steps` steps: store copies,
        # so no two returned observations share memory.
        self._buffer = deque([obs, *(np.array(obs) for _ in range(steps))], maxlen=steps + 1)
        return obs

    def observation(self, obs: Array) -> Array:
        self._buffer.append(obs)
        return self._buffer[0]


class DroppedObservation(ObservationEffect):
    """Lost sensor packets: with probability `prob` per step the observation is all zeros.

    Zeros are clipped into the observation space so the dropped reading is still a member of it.
    The reset observation is never dropped.
    """

    name = "dropped_observation"
    params: ClassVar = {"prob": PROBABILITY}
    prob: Param

    def __init__(self, env: BoxEnv, prob: ScalarLike) -> None:
        super().__init__(env, prob=prob)
        self._dropped = zeros_in(float_box(env.observation_space, "DroppedObservation", "observation"))
        self._rng: np.random.Generator | None = None

    def start_episode(self, rng: np.random.Generator) -> None:
        self._rng = rng

    def reset_observation(self, obs: Array) -> Array:
        return obs

    def observation(self, obs: Array) -> Array:
        assert self._rng is not None, "DroppedObservation: call reset() before step()"
        return self._dropped.copy() if self._rng.random() < self.now["prob"] else obs


class StuckObservation(ObservationEffect):
    """A sensor that freezes: with probability `prob` per step the previous observation repeats.

    'Previous' is the last observation this wrapper returned (a copy is kept, so an inner env that
    reuses its buffer cannot change it), so consecutive stuck steps keep repeating the same value.
    The reset observation is never stuck.
    """

    name = "stuck_observation"
    params: ClassVar = {"prob": PROBABILITY}
    prob: Param

    def __init__(self, env: BoxEnv, prob: ScalarLike) -> None:
        super().__init__(env, prob=prob)
        float_box(env.observation_space, "StuckObservation", "observation")
        self._last: Array | None = None
        self._rng: np.random.Generator | None = None

    def start_episode(self, rng: np.random.Generator) -> None:
        self._rng = rng

    def reset_observation(self, obs: Array) -> Array:
        self._last = np.array(obs)
        return obs

    def observation(self, obs: Any) -> Array:
        assert self._rng is not None and self._last is not None, "StuckObservation: call reset() first"
        if self._rng.random() < self.now["prob"]:
            return self._last.copy()
        self._last = np.array(obs)
        return obs
