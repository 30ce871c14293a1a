"""Gymnasium's v5 MuJoCo tasks written over batched state: observation, reward, termination, reset.

Each `BatchedTask` is the arithmetic of one Gymnasium env class, on torch tensors holding every world's
state (`qpos` (N, nq), `qvel` (N, nv), `xpos` (N, nbody, 3)), read from the Gymnasium env instance it
replaces - its weights, reset noise and initial state - so an env built with other constructor
arguments (`reward_control_weight`, `reset_noise_scale`, ...) is reproduced with them. `before_step`
returns what the reward needs from the state before the step (HalfCheetah's x position); MuJoCo's
`xpos` after a step is, as in Gymnasium, the one computed at the start of its last substep.

`batched_task(env)` is the task of a Gymnasium env, or None when the backend has no batched version of
its class (the caller refuses it, naming the supported ones).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np
import torch
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.envs.mujoco.inverted_pendulum_v5 import InvertedPendulumEnv
from gymnasium.envs.mujoco.reacher_v5 import ReacherEnv


@dataclass(frozen=True)
class State:
    """Views of every world's MuJoCo state (torch, on the simulation's device)."""

    qpos: torch.Tensor
    qvel: torch.Tensor
    xpos: torch.Tensor


class BatchedTask:
    """One Gymnasium MuJoCo env class over N worlds (subclasses: one per supported class)."""

    env_class: type[Any]
    forward_at_reset = False
    """Whether the observation reads quantities MuJoCo computes from qpos (xpos) at reset."""
    frame_skip: int
    init_qpos: np.ndarray
    init_qvel: np.ndarray

    def __init__(self, env: Any) -> None:
        self.frame_skip = int(env.frame_skip)
        self.init_qpos = np.array(env.init_qpos, dtype=np.float64)
        self.init_qvel = np.array(env.init_qvel, dtype=np.float64)

    def observe(self, s: State) -> torch.Tensor:
        raise NotImplementedError

    def before_step(self, s: State) -> torch.Tensor | None:
        return None

    def reward(
        self,
        s: State,
        action: torch.Tensor,
        obs: torch.Tensor,
        terminated: torch.Tensor,
        before: torch.Tensor | None,
        dt: torch.Tensor,
    ) -> torch.Tensor:
        raise NotImplementedError

    def terminated(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.zeros(obs.shape[0], dtype=torch.bool, device=obs.device)

    def reset_state(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """`n` worlds' initial (qpos, qvel), each drawn as the Gymnasium env's `reset_model` draws one."""
        raise NotImplementedError

    def _around(self, rng: np.random.Generator, n: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
        return (
            self.init_qpos + rng.uniform(-scale, scale, (n, len(self.init_qpos))),
            self.init_qvel + rng.uniform(-scale, scale, (n, len(self.init_qvel))),
        )


class InvertedPendulum(BatchedTask):
    env_class = InvertedPendulumEnv

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.noise = float(env._reset_noise_scale)

    def observe(self, s: State) -> torch.Tensor:
        return torch.cat([s.qpos, s.qvel], dim=1)

    def terminated(self, obs: torch.Tensor) -> torch.Tensor:
        return ~torch.isfinite(obs).all(dim=1) | (obs[:, 1].abs() > 0.2)

    def reward(
        self,
        s: State,
        action: torch.Tensor,
        obs: torch.Tensor,
        terminated: torch.Tensor,
        before: torch.Tensor | None,
        dt: torch.Tensor,
    ) -> torch.Tensor:
        return (~terminated).to(obs.dtype)

    def reset_state(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        return self._around(rng, n, self.noise)


class Reacher(BatchedTask):
    env_class = ReacherEnv
    forward_at_reset = True

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.dist_weight = float(env._reward_dist_weight)
        self.control_weight = float(env._reward_control_weight)
        model = env.unwrapped.model
        self.fingertip = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "fingertip")
        self.target = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "target")

    def _to_target(self, s: State) -> torch.Tensor:
        return s.xpos[:, self.fingertip] - s.xpos[:, self.target]

    def observe(self, s: State) -> torch.Tensor:
        theta = s.qpos[:, :2]
        vec = self._to_target(s)[:, :2]
        return torch.cat([theta.cos(), theta.sin(), s.qpos[:, 2:], s.qvel[:, :2], vec], dim=1)

    def reward(
        self,
        s: State,
        action: torch.Tensor,
        obs: torch.Tensor,
        terminated: torch.Tensor,
        before: torch.Tensor | None,
        dt: torch.Tensor,
    ) -> torch.Tensor:
        dist = -torch.linalg.vector_norm(self._to_target(s), dim=1) * self.dist_weight
        return dist - action.square().sum(dim=1) * self.control_weight

    def reset_state(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        qpos = rng.uniform(-0.1, 0.1, (n, len(self.init_qpos))) + self.init_qpos
        goal = rng.uniform(-0.2, 0.2, (n, 2))
        far = np.linalg.norm(goal, axis=1) >= 0.2
        while far.any():  # rejection sampling, as Gymnasium: uniform in the disc of radius 0.2
            goal[far] = rng.uniform(-0.2, 0.2, (int(far.sum()), 2))
            far = np.linalg.norm(goal, axis=1) >= 0.2
        qpos[:, -2:] = goal
        qvel = self.init_qvel + rng.uniform(-0.005, 0.005, (n, len(self.init_qvel)))
        qvel[:, -2:] = 0.0
        return qpos, qvel


class HalfCheetah(BatchedTask):
    env_class = HalfCheetahEnv

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.forward_weight = float(env._forward_reward_weight)
        self.ctrl_weight = float(env._ctrl_cost_weight)
        self.noise = float(env._reset_noise_scale)
        self.skip = int(bool(env._exclude_current_positions_from_observation))

    def observe(self, s: State) -> torch.Tensor:
        return torch.cat([s.qpos[:, self.skip :], s.qvel], dim=1)

    def before_step(self, s: State) -> torch.Tensor | None:
        return s.qpos[:, 0].clone()

    def reward(
        self,
        s: State,
        action: torch.Tensor,
        obs: torch.Tensor,
        terminated: torch.Tensor,
        before: torch.Tensor | None,
        dt: torch.Tensor,
    ) -> torch.Tensor:
        assert before is not None
        velocity = (s.qpos[:, 0] - before) / dt
        return self.forward_weight * velocity - self.ctrl_weight * action.square().sum(dim=1)

    def reset_state(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        qpos = self.init_qpos + rng.uniform(-self.noise, self.noise, (n, len(self.init_qpos)))
        qvel = self.init_qvel + self.noise * rng.standard_normal((n, len(self.init_qvel)))
        return qpos, qvel


TASKS: tuple[type[BatchedTask], ...] = (InvertedPendulum, Reacher, HalfCheetah)
"""The Gymnasium env classes the batched backend reproduces (a new one is a subclass and an entry)."""

SUPPORTED = ", ".join(f"{t.env_class.__name__[:-3]}-v5" for t in TASKS)


def batched_task(env: Any) -> BatchedTask | None:
    """The batched version of `env`'s class (an instance of exactly that class), else None."""
    base = env.unwrapped
    maker: Callable[[Any], BatchedTask] | None = next((t for t in TASKS if type(base) is t.env_class), None)
    return None if maker is None else maker(base)
