"""Replaying recorded steps in the sim: set it to a recorded state, apply the recorded commands (through the
candidate's actuation effects), compare its observations with the recorded ones over a short horizon.

The error of a candidate is the mean squared difference over segments, horizon steps and observation
dimensions, each dimension in units of the spread of its recorded one-step changes (dimensions that never
change - a fixed goal, say - are left out).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from simreal.simulation.calibration.model import CalAxis, Sim
from simreal.simulation.calibration.recording import Recording

HORIZON = 5
"""Steps each replayed segment runs open loop, compared with the recording."""
WARMUP = 4
"""Steps before a segment that the sim tracks the recording with a fixed-gain observer (`GAIN`), so that
the segment starts from a filtered state rather than one noisy reading: a noisy start biases the fit
(errors in variables), the more so on an unstable system."""
GAIN = 0.5
RESET_HORIZON = 50
"""Without a `state_from_obs`, each episode is replayed from the sim's reset for this many steps (at most
its length): the start state cannot match the robot's, so this mode fits only what shows through that."""
SEGMENTS = 96
"""Segments drawn from the fitted episodes (all of them where there are fewer). Chosen on panel targets
(BENCHMARKS.md, "Segments chosen on panel targets"): 96 fitted as well as 192 or better, in half the time."""


@dataclass(frozen=True)
class Setting:
    """One candidate: a value for every dynamics axis (continuous from `u`, discrete as given)."""

    physics: dict[int, float]
    effects: dict[int, dict[str, Any]]
    obs_delay: int


class Replay:
    """The replay error of candidates on a recording's episodes."""

    def __init__(
        self,
        sim: Sim,
        recording: Recording,
        axes: list[CalAxis],
        seed: int,
        horizon: int | None = None,
        segments: int | None = None,
    ) -> None:
        horizon = HORIZON if horizon is None else horizon
        segments = SEGMENTS if segments is None else segments
        self.sim = sim
        self.episodes = recording.episodes
        self.from_reset = sim.setter is None
        if self.from_reset:  # whole episodes from the sim's reset, up to RESET_HORIZON steps
            horizon = min(RESET_HORIZON, *(e.steps for e in recording.episodes))
        self.horizon = horizon
        self.continuous = [a for a in axes if a.kind == "dynamics" and not a.discrete]
        self.discrete = [a for a in axes if a.kind == "dynamics" and a.discrete]
        self._segments = segments
        self._seed = seed
        changes = np.concatenate([np.diff(e.obs, axis=0) for e in self.episodes])
        spread = changes.std(axis=0)
        self.keep = spread > 1e-9 + 1e-6 * spread.max()
        self.scale = np.where(self.keep, spread, 1.0)
        self._starts: dict[int, list[tuple[int, int]]] = {}
        self.left_out: frozenset[int] = frozenset()
        self._applied: dict[tuple[Any, ...], list[np.ndarray]] = {}

    def starts(self, obs_delay: int) -> list[tuple[int, int]]:
        """Segment starts `(episode, t)` that fit a horizon after `obs_delay` (the same draw every call),
        without those of the episodes in `left_out` (a jackknife refit)."""
        drawn = self._drawn(obs_delay)
        return [(e, t) for e, t in drawn if e not in self.left_out] if self.left_out else drawn

    def _drawn(self, obs_delay: int) -> list[tuple[int, int]]:
        if self.from_reset:
            return [(e, 0) for e, ep in enumerate(self.episodes) if ep.steps - obs_delay >= self.horizon]
        if obs_delay not in self._starts:
            valid = [
                (e, t)
                for e, ep in enumerate(self.episodes)
                for t in range(min(WARMUP, ep.steps), ep.steps - obs_delay - self.horizon + 1)
            ]
            if len(valid) > self._segments:
                rng = np.random.default_rng([self._seed, obs_delay])
                picked = rng.choice(len(valid), size=self._segments, replace=False)
                valid = [valid[i] for i in sorted(picked)]
            self._starts[obs_delay] = valid
        return self._starts[obs_delay]

    def setting(self, u: np.ndarray, discrete: dict[str, float]) -> Setting:
        physics: dict[int, float] = {}
        effects: dict[int, dict[str, Any]] = {}
        obs_delay = 0
        values = {a.name: a.value(float(x)) for a, x in zip(self.continuous, u, strict=True)}
        values.update(discrete)
        for axis in (*self.continuous, *self.discrete):
            value = values[axis.name]
            if axis.source == "physics":
                physics[axis.index] = value
            elif self.sim.spec.source_effects[axis.index].type == "observation_delay":
                obs_delay = int(round(value))
            else:
                assert axis.arg is not None
                effects.setdefault(axis.index, {})[axis.arg] = (
                    int(round(value)) if axis.axis.integer else value
                )
        return Setting(physics, effects, obs_delay)

    def applied(self, setting: Setting) -> list[np.ndarray]:
        """Every episode's applied actions under the setting's actuation effects (cached per setting)."""
        key = tuple(sorted((j, tuple(sorted(a.items()))) for j, a in setting.effects.items()))
        if key not in self._applied:
            if len(self._applied) > 64:
                self._applied.clear()
            self._applied[key] = [self.sim.applied(e.actions, setting.effects) for e in self.episodes]
        return self._applied[key]

    def residuals(
        self, setting: Setting, starts: list[tuple[int, int]] | None = None, noise: float = 0.0
    ) -> np.ndarray:
        """Scaled prediction errors, `(segments, horizon, kept dims)`. With `noise`, on synthetic data
        instead: the candidate's own trajectories from the recorded states, read with sensor noise of that
        std (the same draws for every candidate) - the part of the error that noise alone makes."""
        self.sim.set_physics(setting.physics)
        applied = self.applied(setting)
        k = setting.obs_delay
        starts = self.starts(k) if starts is None else starts
        out = np.empty((len(starts), self.horizon, int(self.keep.sum())))
        for s, (e, t) in enumerate(starts):
            first = t if self.from_reset else max(t - WARMUP, 0)
            window = self.episodes[e].obs[first + k : t + k + self.horizon + 1]
            actions = applied[e][first : t + self.horizon]
            if noise > 0:
                window = self._synthetic(window[0], actions, noise, (e, t))
            predicted = self._predict(window, actions, t - first)
            out[s] = ((predicted - window[t - first + 1 :]) / self.scale)[:, self.keep]
        return out

    def _synthetic(
        self, start: np.ndarray, actions: np.ndarray, noise: float, key: tuple[int, int]
    ) -> np.ndarray:
        """The candidate's trajectory from `start` under `actions`, read with sensor noise."""
        self.sim.set_state(start)
        clean = np.array([start, *(self.sim.step(a) for a in actions)])
        rng = np.random.default_rng([self._seed, 23, *key])
        return clean + noise * rng.standard_normal(clean.shape)

    def _predict(self, window: np.ndarray, actions: np.ndarray, warm: int) -> np.ndarray:
        """The sim tracks `window` for `warm` steps with a fixed-gain observer, then runs open loop for the
        horizon (without a `state_from_obs`: from the sim's own reset state)."""
        if self.from_reset:
            self.sim.reset(seed=0)
        else:
            self.sim.set_state(window[0])
        for i in range(warm):
            predicted = self.sim.step(actions[i])
            self.sim.set_state(predicted + GAIN * (window[i + 1] - predicted))
        return np.array([self.sim.step(actions[warm + j]) for j in range(self.horizon)])

    def loss(self, setting: Setting, noise: float = 0.0) -> float:
        """The mean squared replay error; with `noise`, less what sensor noise of that std alone gives
        the same candidate on its own synthetic data (noisy start states bias a plain fit toward models
        that amplify noise less - errors in variables; the difference is free of that bias to first
        order)."""
        r = self.residuals(setting)
        if not r.size:
            return float("inf")
        plain = float(np.mean(r**2))
        if noise <= 0:
            return plain
        return plain - float(np.mean(self.residuals(setting, noise=noise) ** 2))

    def episode_losses(self, setting: Setting) -> np.ndarray:
        """The loss per episode (over that episode's segments; NaN where it has none)."""
        starts = self.starts(setting.obs_delay)
        r = self.residuals(setting, starts)
        per = np.full(len(self.episodes), np.nan)
        owners = np.array([e for e, _ in starts])
        for e in range(len(self.episodes)):
            mine = owners == e
            if mine.any():
                per[e] = float(np.mean(r[mine] ** 2))
        return per

    def one_step(
        self, setting: Setting, obs_noise: float = 0.0, act_noise: float = 0.0, seed: int = 0
    ) -> np.ndarray:
        """Scaled one-step errors, `(segments, kept dims)`; with noise given, on synthetic data: the sim's
        own clean prediction as the truth, noise added to the start state, the truth and the actions."""
        self.sim.set_physics(setting.physics)
        applied = self.applied(setting)
        k = setting.obs_delay
        starts = self.starts(k)
        rng = np.random.default_rng(seed)
        synthetic = obs_noise > 0 or act_noise > 0
        out = np.empty((len(starts), int(self.keep.sum())))
        for s, (e, t) in enumerate(starts):
            obs = self.episodes[e].obs
            start, action = obs[t + k], applied[e][t]
            if synthetic:
                self.sim.set_state(start)
                truth = self.sim.step(action) + obs_noise * rng.standard_normal(len(start))
                start = start + obs_noise * rng.standard_normal(len(start))
                action = action + act_noise * rng.standard_normal(len(action))
            else:
                truth = obs[t + k + 1]
            self.sim.set_state(start)
            out[s] = ((self.sim.step(action) - truth) / self.scale)[self.keep]
        return out
