"""Sensor-side effects: noise, delay, dropped packets and stuck readings on Box observations.

Each wrapper changes the observation only; reward, termination and info pass through untouched.
Per-episode parameters are drawn at reset from the env's `np_random` and recorded in
`info["effects"]`; per-step randomness comes from the same generator.
"""

from __future__ import annotations

from collections import deque
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from simreal.effects.base import Array, BoxEnv, NoiseStream, float_box, record_effects, zeros_in
from simreal.effects.params import IntScalarLike, ScalarLike, param


class ObservationNoise(gym.Wrapper[Array, Array, Array, Array], gym.utils.RecordConstructorArgs):
    """Gaussian sensor noise: obs + bias + white noise, cast back to the observation dtype.

    `bias` ~ N(0, bias_std) per observation component is drawn once per episode (a miscalibrated
    sensor); white noise ~ N(0, std) is drawn every step. If the space has finite bounds the result
    is clipped into it, so the observation stays a member of the space.
    """

    effect = "observation_noise"

    def __init__(self, env: BoxEnv, std: ScalarLike, bias_std: ScalarLike = 0.0) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, std=std, bias_std=bias_std)
        gym.Wrapper.__init__(self, env)
        box = float_box(env.observation_space, "ObservationNoise", "observation")
        self.std = param("std", std, owner="ObservationNoise")
        self.bias_std = param("bias_std", bias_std, owner="ObservationNoise")
        self._shape = box.shape
        self._dtype = box.dtype
        self._clip = bool(np.isfinite(box.low).any() or np.isfinite(box.high).any())
        self._low, self._high = box.low, box.high
        self._noise: NoiseStream | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Array, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        rng = self.np_random
        std = self.std.draw(rng)
        bias_std = self.bias_std.draw(rng)
        bias = rng.normal(0.0, bias_std, size=self._shape) if bias_std > 0 else None
        self._noise = NoiseStream(rng, std, self._shape, self._dtype, offset=bias)
        drawn = {"std": std, "bias_std": bias_std}
        return self._noisy(obs), record_effects(info, self.effect, drawn)

    def step(self, action: Array) -> tuple[Array, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._noisy(obs), reward, terminated, truncated, info

    def _noisy(self, obs: Array) -> Array:
        assert self._noise is not None, "ObservationNoise: call reset() before step()"
        noisy = self._noise.next()
        noisy += obs
        if self._clip:
            np.minimum(noisy, self._high, out=noisy)
            np.maximum(noisy, self._low, out=noisy)
        return noisy


class ObservationDelay(gym.Wrapper[Array, Array, Array, Array], gym.utils.RecordConstructorArgs):
    """Stale readings: each step returns the observation from `steps` steps ago.

    At the start of an episode the reset observation is repeated until enough steps have passed.
    `steps` may be a `[low, high]` range, drawn per episode as an integer. Observations from the
    inner env are kept by reference: like gymnasium, this assumes an env returns fresh arrays.
    """

    effect = "observation_delay"

    def __init__(self, env: BoxEnv, steps: IntScalarLike) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, steps=steps)
        gym.Wrapper.__init__(self, env)
        float_box(env.observation_space, "ObservationDelay", "observation")
        self.steps = param("steps", steps, owner="ObservationDelay")
        self._buffer: deque[Array] = deque(maxlen=1)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Array, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        steps = int(self.steps.draw(self.np_random))
        # The reset observation is returned now and again for the next `steps` steps: store copies,
        # so no two returned observations share memory.
        self._buffer = deque([obs, *(np.array(obs) for _ in range(steps))], maxlen=steps + 1)
        return obs, record_effects(info, self.effect, {"steps": steps})

    def step(self, action: Array) -> tuple[Array, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._buffer.append(obs)
        return self._buffer[0], reward, terminated, truncated, info


class DroppedObservation(gym.Wrapper[Array, Array, Array, Array], gym.utils.RecordConstructorArgs):
    """Lost sensor packets: with probability `prob` per step the observation is all zeros.

    Zeros are clipped into the observation space so the dropped reading is still a member of it.
    The reset observation is never dropped.
    """

    effect = "dropped_observation"

    def __init__(self, env: BoxEnv, prob: ScalarLike) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, prob=prob)
        gym.Wrapper.__init__(self, env)
        box = float_box(env.observation_space, "DroppedObservation", "observation")
        self.prob = param("prob", prob, owner="DroppedObservation")
        self._dropped = zeros_in(box)
        self._prob_now = self.prob.low
        self._rng: np.random.Generator | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Array, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._rng = self.np_random
        self._prob_now = self.prob.draw(self._rng)
        return obs, record_effects(info, self.effect, {"prob": self._prob_now})

    def step(self, action: Array) -> tuple[Array, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        assert self._rng is not None, "DroppedObservation: call reset() before step()"
        if self._rng.random() < self._prob_now:
            obs = self._dropped.copy()
        return obs, reward, terminated, truncated, info


class StuckObservation(gym.Wrapper[Array, Array, Array, Array], gym.utils.RecordConstructorArgs):
    """A sensor that freezes: with probability `prob` per step the previous observation repeats.

    'Previous' is the last observation this wrapper returned (a copy is kept, so an inner env that
    reuses its buffer cannot change it), so consecutive stuck steps keep repeating the same value.
    The reset observation is never stuck.
    """

    effect = "stuck_observation"

    def __init__(self, env: BoxEnv, prob: ScalarLike) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, prob=prob)
        gym.Wrapper.__init__(self, env)
        float_box(env.observation_space, "StuckObservation", "observation")
        self.prob = param("prob", prob, owner="StuckObservation")
        self._prob_now = self.prob.low
        self._last: Array | None = None
        self._rng: np.random.Generator | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Array, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._rng = self.np_random
        self._prob_now = self.prob.draw(self._rng)
        self._last = np.array(obs)
        return obs, record_effects(info, self.effect, {"prob": self._prob_now})

    def step(self, action: Array) -> tuple[Array, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        assert self._rng is not None and self._last is not None, "StuckObservation: call reset() first"
        if self._rng.random() < self._prob_now:
            obs = self._last.copy()
        else:
            self._last = np.array(obs)
        return obs, reward, terminated, truncated, info
