"""What calibration can move, and the sim it moves: the task's axes, and its nominal sim held open for replay.

Every range the task draws from is a calibration axis (`simreal.simulation.axes`), plus the `choice`
physics entries (e.g. a control rate), each seen one of three ways:

- `dynamics`: it changes what the sim does under a command - physics entries (one value per entry,
  applied to all its elements, as a target's physics entry is), the arguments of actuation effects
  (`ActionEffect` subclasses: delay, dead zone, saturation, a user's own), and observation delay. Fit by
  replaying recorded steps: continuous ones by CMA-ES, whole-numbered ones by enumeration;
- `noise`: per-step sensor or actuator noise (`observation_noise.std`, `action_noise.std`): fit by matching
  the spread of the one-step replay residuals in simulation (simulated moments);
- `none`: what replay cannot see (a per-episode sensor bias, dropped or stuck readings, timing jitter,
  effects that are not `ActionEffect`s): reported unidentified, its range kept.

Coordinates: a fit works in `u`, each axis centred on its range and scaled by its half-width (in log
space for `log` axes), so that `u = +-1` are the range's edges.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from envs.params import PHYSICS
from simreal.schema import ConfigError
from simreal.simulation.axes import Axis, effect_axes, physics_axes
from simreal.simulation.effects import EffectSpec, effect_class
from simreal.simulation.effects.base import ActionEffect, neutral_value
from simreal.simulation.randomization import ParamSpec, physics_space
from simreal.simulation.references import is_reference, load_attr
from simreal.simulation.registry import Task
from simreal.simulation.sampling import BoundParam, ParamSet, bind
from simreal.simulation.tasks import TaskSpec

Kind = Literal["dynamics", "noise", "none"]
NOISE = {("observation_noise", "std"), ("action_noise", "std")}
"""Effect arguments fit by simulated moments (per-step noise); every other stochastic one is `none`."""
SEARCH_BEYOND = 3.0
"""How far past its range a fit may look: a factor of 3 for log axes, 2 widths on each side otherwise."""


@dataclass(frozen=True)
class CalAxis:
    """One calibration axis: where it lives in the task, its range, and how calibration sees it."""

    name: str
    kind: Kind
    source: Literal["physics", "effect"]
    index: int  # physics entry index, or effect index in `source_effects`
    arg: str | None  # the effect argument
    axis: Axis
    values: tuple[float, ...] | None = None  # whole-numbered and choice axes: the values tried
    why: str = ""  # for `none`: why replay cannot see it

    @property
    def discrete(self) -> bool:
        return self.values is not None

    def to_z(self, value: float) -> float:
        return math.log(value) if self.axis.log else value

    def from_z(self, z: float) -> float:
        return math.exp(z) if self.axis.log else z

    @property
    def centre_z(self) -> float:
        return (self.to_z(self.axis.low) + self.to_z(self.axis.high)) / 2

    @property
    def half_z(self) -> float:
        return (self.to_z(self.axis.high) - self.to_z(self.axis.low)) / 2

    def value(self, u: float) -> float:
        """The axis value at coordinate `u`."""
        return self.from_z(self.centre_z + u * self.half_z)

    def u(self, value: float) -> float:
        return (self.to_z(value) - self.centre_z) / self.half_z

    def search_bounds(self) -> tuple[float, float]:
        """The `u` interval a fit searches: past the range by `SEARCH_BEYOND`, within what is allowed."""
        if self.axis.log:
            reach = math.log(SEARCH_BEYOND) / self.half_z
        else:  # a range's width is 2 in u
            reach = 2.0 * (SEARCH_BEYOND - 1.0)
        low, high = -1.0 - reach, 1.0 + reach
        if self.axis.floor is not None:
            floor = self.axis.floor if not self.axis.log else max(self.axis.floor, 1e-9)
            low = max(low, self.u(floor))
        if self.axis.ceiling is not None:
            high = min(high, self.u(self.axis.ceiling))
        return low, high


def _steps_values(axis: Axis) -> tuple[float, ...]:
    """Whole values a discrete axis tries: its range, widened by the span (at least 2) on each side."""
    span = max(2, int(axis.high - axis.low))
    low = int(axis.low) - span
    if axis.floor is not None:
        low = max(low, int(math.ceil(axis.floor)))
    high = int(axis.high) + span
    if axis.ceiling is not None:
        high = min(high, int(math.floor(axis.ceiling)))
    return tuple(float(v) for v in range(low, high + 1))


def _effect_cls(kind: str, where: str) -> type[gym.Wrapper[Any, Any, Any, Any]]:
    try:
        return effect_class(kind)
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from None


def calibration_axes(spec: TaskSpec) -> list[CalAxis]:
    """Every axis of `spec` in task order: physics entries with a range or a choice, then effect arguments."""
    out: list[CalAxis] = []
    ranged = {id(entry): axis for entry, axis in physics_axes(spec)}
    for i, entry in enumerate(spec.randomization.params):
        name = entry.param + (f"/{','.join(entry.names)}" if entry.names else "")
        if id(entry) in ranged:
            out.append(CalAxis(name, "dynamics", "physics", i, None, ranged[id(entry)]))
        elif entry.dist == "choice" and entry.values and len(set(entry.values)) > 1:
            info = None if is_reference(entry.param) else PHYSICS.get(entry.param)
            whole = all(float(v).is_integer() for v in entry.values)
            floor = (info.low if info is not None else None) if entry.mode == "abs" else None
            axis = Axis(name, min(entry.values), max(entry.values), False, whole, floor, None)
            tried = _steps_values(axis) if whole else tuple(sorted(set(entry.values)))
            out.append(CalAxis(name, "dynamics", "physics", i, None, axis, tried))
    for j, (kind, _, axes) in enumerate(effect_axes(spec)):
        cls = _effect_cls(kind, f"{spec.source}: source_effects.{j}")
        for arg, axis in axes:
            values = _steps_values(axis) if axis.integer else None
            if (kind, arg) in NOISE:
                out.append(CalAxis(axis.name, "noise", "effect", j, arg, axis))
            elif issubclass(cls, ActionEffect) and kind != "action_noise":
                out.append(CalAxis(axis.name, "dynamics", "effect", j, arg, axis, values))
            elif kind == "observation_delay" and arg == "steps":
                out.append(CalAxis(axis.name, "dynamics", "effect", j, arg, axis, values))
            else:
                why = "a per-episode or per-step draw that replaying recorded steps cannot separate"
                if not issubclass(cls, ActionEffect) and kind not in ("observation_noise",):
                    why = "an effect replay does not model (only actuation effects and observation delay)"
                out.append(CalAxis(axis.name, "none", "effect", j, arg, axis, None, why))
    return out


StateSetter = Callable[[Any, np.ndarray], Any]


def state_setter(spec: TaskSpec) -> StateSetter | None:
    """The task's `state_from_obs` function (None where the task names none)."""
    if spec.state_from_obs is None:
        return None
    fn: StateSetter = load_attr(spec.state_from_obs, f"{spec.source}: state_from_obs")
    return fn


class _Probe(gym.Env[np.ndarray, np.ndarray]):
    """A stand-in env under the actuation effects: what they pass down is what the robot's motors got."""

    def __init__(self, observation_space: gym.Space[Any], action_space: gym.Space[Any]) -> None:
        self.observation_space = observation_space
        self.action_space = action_space
        self._zeros = np.zeros(observation_space.shape or (), dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        super().reset(seed=seed)
        return self._zeros, {}

    def step(self, action: np.ndarray) -> Any:
        return self._zeros, 0.0, False, False, {}


class Sim:
    """The task's nominal sim, open for replay: physics entries set by value, state set from observations,
    commanded actions turned into applied ones by the task's actuation effects."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.spec = task.spec
        self.env = gym.make(task.nominal_id)
        self.env.reset(seed=0)
        self.raw: Any = self.env.unwrapped
        self.setter = state_setter(self.spec)
        entries = self.spec.randomization.params
        self._space = physics_space(self.env, tuple(entries))
        where = f"{self.spec.source}: randomization.params"
        self.bound: list[BoundParam] = [bind(self._space, e, f"{where}.{i}") for i, e in enumerate(entries)]
        self.params = ParamSet(self.bound, self._space)
        self.neutral = neutral_value(self.env.action_space)  # type: ignore[arg-type]
        # Gymnasium's own MuJoCo envs step as `do_simulation` then `_get_obs` (the reward and the end of
        # the episode are bookkeeping replay never reads): call those two, and skip a third of the time.
        self._physics_only = type(self.raw).__module__.startswith("gymnasium.envs.mujoco.") and all(
            hasattr(self.raw, a) for a in ("data", "_step_mujoco_simulation", "_get_obs", "frame_skip")
        )
        self._dtype = self.env.action_space.dtype

    @property
    def obs_dim(self) -> int:
        return int(np.prod(self.env.observation_space.shape))  # type: ignore[arg-type]

    @property
    def act_dim(self) -> int:
        return int(np.prod(self.env.action_space.shape))  # type: ignore[arg-type]

    def close(self) -> None:
        self.env.close()

    def bind_entries(self, entries: Sequence[ParamSpec]) -> ParamSet:
        """Another task's entries (same parameters, other ranges), bound to this sim from nominal."""
        self.params.restore()
        where = f"{self.spec.source}: randomization.params"
        bound = [bind(self._space, e, f"{where}.{i}") for i, e in enumerate(entries)]
        return ParamSet(bound, self._space)

    def set_physics(self, values: dict[int, float]) -> None:
        """Physics entry `i` at `values[i]` (in its YAML units: factor, offset or value); the entries not
        given at their middle (`entry_middle`: a fixed entry's value)."""
        entries = self.spec.randomization.params
        drawn = [
            b.values(np.array([values[i] if i in values else entry_middle(entries[i])]))
            for i, b in enumerate(self.bound)
        ]
        self.params.apply(drawn)

    def set_state(self, obs: np.ndarray) -> None:
        """The sim at the state `obs` shows (the task's `state_from_obs`)."""
        assert self.setter is not None
        state = self.setter(self.raw, obs)
        if state is None:
            return
        qpos, qvel = (np.asarray(x, dtype=np.float64) for x in state)
        model = getattr(self.raw, "model", None)
        nq, nv = (model.nq, model.nv) if model is not None else (None, None)
        if nq is None or qpos.shape != (nq,) or qvel.shape != (nv,):
            raise ConfigError(
                f"{self.spec.source}: state_from_obs: {self.spec.state_from_obs} returned qpos {qpos.shape}"
                f" and qvel {qvel.shape}; the env needs ({nq},) and ({nv},) (or set the state and "
                "return None)"
            )
        data = self.raw.data
        if self._physics_only:
            # Gymnasium's set_state without its `mj_forward`: every caller steps next, and a step computes
            # everything it reads afresh (the same results to the last bit; a fifth of a replay's time on
            # Reacher). A history-free solver warm start: a replay does not depend on the last one.
            data.qpos[:], data.qvel[:] = qpos, qvel
            data.qacc_warmstart[:] = 0.0
        else:
            self.raw.set_state(qpos, qvel)
        if model is not None and model.na:
            # Actuator activations (filters, muscles) are state an observation does not show: start them at
            # rest, as a reset does, so that a replay does not depend on the one before it (the warm-up
            # steps before each compared segment let them follow the recorded commands).
            data.act[:] = 0.0

    def step(self, action: np.ndarray) -> np.ndarray:
        """One control step of the raw sim from its current state; the observation it gives."""
        command = np.asarray(action, dtype=self._dtype)
        if self._physics_only:  # `do_simulation` without its per-call shape check
            self.raw._step_mujoco_simulation(command, self.raw.frame_skip)
            obs = self.raw._get_obs()
        else:
            obs = self.raw.step(command)[0]
        return np.asarray(obs, dtype=np.float64).ravel()

    def reset(self, seed: int) -> np.ndarray:
        obs, _ = self.env.reset(seed=seed)
        return np.asarray(obs, dtype=np.float64).ravel()

    def applied(
        self,
        commands: np.ndarray,
        effect_args: dict[int, dict[str, Any]],
        effects: Sequence[EffectSpec] | None = None,
    ) -> np.ndarray:
        """The actions the motors got for an episode's commanded ones, through the actuation effects among
        `effects` (default: the task's source effects), the arguments in `effect_args[j]` given, the other
        ranged ones at their low end, noise off."""
        env: gym.Env[Any, Any] = _Probe(self.env.observation_space, self.env.action_space)
        chain: list[Any] = []
        for j, effect in enumerate(self.spec.source_effects if effects is None else effects):
            cls = effect.wrapper
            if not issubclass(cls, ActionEffect):
                continue
            args = {**_fixed(effect), **effect_args.get(j, {})}
            if effect.type == "action_noise":
                args["std"] = 0.0
            env = cls(env, **args)
            chain.append(env)
        if not chain:
            return commands
        env.reset(seed=0)
        out = np.empty_like(commands)
        for t, command in enumerate(commands):
            action = np.asarray(command, dtype=self.env.action_space.dtype)
            for wrapper in reversed(chain):  # the outermost acts first
                action = wrapper.action(action)
            out[t] = action
        return out


def entry_middle(entry: ParamSpec) -> float:
    """What a randomization entry draws around: a fixed value, the middle of a range (in log space for
    log_uniform), a normal's mean, a choice's median."""
    if entry.dist == "fixed":
        assert entry.value is not None
        return float(entry.value)
    if entry.dist == "normal":
        assert entry.mean is not None
        return float(entry.mean)
    if entry.dist == "choice":
        assert entry.values
        return float(sorted(entry.values)[len(entry.values) // 2])
    assert entry.low is not None and entry.high is not None
    if entry.dist == "log_uniform":
        return math.sqrt(entry.low * entry.high)
    return (entry.low + entry.high) / 2


def _fixed(effect: EffectSpec) -> dict[str, Any]:
    """An effect's arguments with every range at its low end (the ranged ones are set by the caller)."""
    return {k: (v[0] if isinstance(v, list | tuple) and len(v) == 2 else v) for k, v in effect.args.items()}
