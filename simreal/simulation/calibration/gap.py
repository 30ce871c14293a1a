"""The dynamics gap: how much worse a forward model learned on the sim predicts the target than the sim.

`forward_model_gap` is `simreal diagnose`'s metric: a ridge regression of the observation change on the
observation and the commands, fit on half the sim's transitions; its mean squared error on the target's
transitions over that on the other half of the sim's, per dimension, and their geometric mean (the
score: ~1 where the target moves like some mix of the sim, larger the further it lies outside).

Calibration measures it on held-out recorded episodes, with the sim's transitions taken at the same
recorded states and commands: for each of `DRAWS` draws of the task's randomization (physics, the
actuation effects' ranged arguments, sensor noise), the sim is set to each recorded state and steps the
recorded command one step before each recorded transition, then the transition's own command: the sim's
transition starts from a state of its own, read by its own sensor noise at both ends as the robot's
were. So the original task and the calibrated one are compared on every recorded transition. Observation
delay is not drawn here (the sim is set to the state it reports).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from simreal.simulation.calibration.model import Sim
from simreal.simulation.calibration.recording import Episode
from simreal.simulation.effects.params import Param
from simreal.simulation.tasks import TaskSpec

DRAWS = 8
LAGS = 3
"""Earlier commands among the forward model's inputs (so it can represent a short actuation delay)."""


def forward_model_gap(
    source: tuple[np.ndarray, np.ndarray],
    target: tuple[np.ndarray, np.ndarray],
    rng: np.random.Generator,
) -> dict[str, Any]:
    """`source` and `target` as `(inputs, observation change)`; see the module docstring."""
    features, delta = (np.hstack([source[0], np.ones((len(source[0]), 1))]), source[1])
    order = rng.permutation(len(features))
    fit, held = order[: len(order) // 2], order[len(order) // 2 :]
    ridge = 1e-3 * np.eye(features.shape[1])
    weights = np.linalg.solve(features[fit].T @ features[fit] + ridge, features[fit].T @ delta[fit])
    held_err = ((features[held] @ weights - delta[held]) ** 2).mean(axis=0)
    t_features = np.hstack([target[0], np.ones((len(target[0]), 1))])
    target_err = ((t_features @ weights - target[1]) ** 2).mean(axis=0)
    floor = 1e-10 + 1e-6 * delta.var(axis=0)
    ratio = (target_err + floor) / (held_err + floor)
    return {
        "per_dimension": ratio.tolist(),
        "score": float(np.exp(np.mean(np.log(ratio)))),
        "source_error": held_err.tolist(),
        "target_error": target_err.tolist(),
    }


def _inputs(obs: np.ndarray, commands: np.ndarray, start: int = 0) -> np.ndarray:
    """Per step from `start` (one row of `obs` each): the observation, the command and the `LAGS` commands
    before it (zeros before the episode's start)."""
    padded = np.vstack([np.zeros((LAGS, commands.shape[1])), commands])
    rows = np.arange(start, start + len(obs))
    lagged = [padded[rows + LAGS - k] for k in range(LAGS + 1)]
    return np.hstack([obs, *lagged])


def _draw_effects(spec: TaskSpec, rng: np.random.Generator) -> tuple[dict[int, dict[str, Any]], float]:
    """One draw of the source effects' ranged arguments, and the sensor noise std it gives."""
    args: dict[int, dict[str, Any]] = {}
    noise = 0.0
    for j, effect in enumerate(spec.source_effects):
        drawn: dict[str, Any] = {}
        rules = getattr(effect.wrapper, "params", None) or {}
        for key, value in effect.args.items():
            if isinstance(value, list | tuple) and len(value) == 2:
                integer = key in rules and rules[key].integer
                draw = Param(key, float(value[0]), float(value[1]), integer).draw(rng)
                drawn[key] = int(draw) if integer else draw
        args[j] = drawn
        if effect.type == "observation_noise":
            std = effect.args.get("std", 0.0)
            noise = float(drawn.get("std", std if not isinstance(std, list | tuple) else std[0]))
    return args, noise


def sim_transitions(
    sim: Sim, spec: TaskSpec, episodes: tuple[Episode, ...], seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The sim's transitions at the recorded states and commands, over `DRAWS` draws of `spec`'s
    randomization (its entries bound to `sim`, which must be the same task's)."""
    params = sim.bind_entries(spec.randomization.params)
    rng = np.random.default_rng([seed, 3])
    inputs, deltas = [], []
    for _ in range(DRAWS):
        params.resample(rng)
        effect_args, noise = _draw_effects(spec, rng)
        for episode in episodes:
            applied = sim.applied(episode.actions, effect_args, spec.source_effects)
            before, after = np.empty_like(episode.obs[:-1]), np.empty_like(episode.obs[:-1])
            if sim.setter is None:  # no state to set: the sim's own episode from reset, same commands
                state = sim.reset(seed=0)
                for t in range(episode.steps):
                    before[t], state = state, sim.step(applied[t])
                    after[t] = state
            for t in range(episode.steps if sim.setter is not None else 0):
                # the sim's own state at t: one of its steps from the recorded state before (at t = 0,
                # the recorded start), then its transition under the command at t
                sim.set_state(episode.obs[max(t - 1, 0)])
                before[t] = sim.step(applied[t - 1]) if t > 0 else episode.obs[0]
                after[t] = sim.step(applied[t])
            # read by the sim's sensor at both ends, as the robot's transitions were
            before += noise * rng.standard_normal(before.shape)
            after += noise * rng.standard_normal(after.shape)
            inputs.append(_inputs(before, episode.actions))
            deltas.append(after - before)
    sim.params.restore()
    return np.vstack(inputs), np.vstack(deltas)


def recorded_transitions(episodes: tuple[Episode, ...]) -> tuple[np.ndarray, np.ndarray]:
    inputs = [_inputs(e.obs[:-1], e.actions) for e in episodes]
    deltas = [np.diff(e.obs, axis=0) for e in episodes]
    return np.vstack(inputs), np.vstack(deltas)


def dynamics_gap(sim: Sim, spec: TaskSpec, held_out: tuple[Episode, ...], seed: int) -> dict[str, Any]:
    """The gap between `spec`'s randomized sim and the held-out recorded episodes."""
    source = sim_transitions(sim, spec, held_out, seed)
    target = recorded_transitions(held_out)
    return forward_model_gap(source, target, np.random.default_rng([seed, 5]))
