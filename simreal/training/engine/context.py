"""What every stage of a run shares: the config, the run directory, the device, and the envs it builds.

`Context` names the source and target ids of the experiment's task (registering the task in whichever
process a stage runs in), builds envs with the observation wrappers the policy sees, and computes the
target training budget - all of it, or with `evaluation.count_in_budget` what is left after reserving
the evaluations' worst case, so the target steps of a variant never exceed `finetune.timesteps`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

from simreal.config import ExperimentConfig
from simreal.simulation.accounting import TargetLedger
from simreal.simulation.observation import observation_wrapper
from simreal.simulation.registry import Task, ensure
from simreal.training.engine.method import methods_of


@dataclass(frozen=True)
class Context:
    """Resolved, run-wide settings shared by every stage."""

    cfg: ExperimentConfig
    run_dir: Path
    device: torch.device
    progress_bar: bool = True

    def stage_dir(self, variant: str, seed: int) -> Path:
        return self.run_dir / variant / f"seed{seed}"

    @property
    def task(self) -> Task:
        """The experiment's task, registered in this process (a spawned worker registers it here)."""
        return ensure(self.cfg.task)

    @property
    def target_id(self) -> str:
        if self.cfg.pixels:
            return self.task.pixel_target_id(self.cfg.target)
        return self.task.target_id(self.cfg.target)

    def source_id(self, randomized: bool) -> str:
        if self.cfg.pixels:
            return self.task.pixel_randomized_id if randomized else self.task.pixel_nominal_id
        return self.task.randomized_id if randomized else self.task.nominal_id

    @property
    def eval_envs(self) -> int:
        """Envs an evaluation runs side by side (`evaluation.n_envs`; one on an exclusive target)."""
        if self.cfg.exclusive:
            return 1
        n = self.cfg.evaluation.n_envs
        return n if n is not None else (4 if self.cfg.perception is not None else 1)

    def eval_seed(self, seed: int, final: bool = False) -> int:
        return (200_000 if final else 100_000) + 1_000 * seed

    @property
    def wrapper(self) -> Callable[[gym.Env[Any, Any]], gym.Env[Any, Any]] | None:
        """What the policy observes beyond the env (e.g. its recent actions), from the config."""
        return observation_wrapper(self.cfg.observation)

    def make_env(self, env_id: str, **kwargs: Any) -> gym.Env[Any, Any]:
        env = gym.make(env_id, **kwargs)
        return self.wrapper(env) if self.wrapper else env

    def make_target(self, ledger: TargetLedger | None = None) -> gym.Env[Any, Any]:
        """A target env as the policy sees it; with a ledger, its steps are counted there."""
        return self.make_env(self.target_id, **self.target_kwargs(ledger))

    @staticmethod
    def target_kwargs(ledger: TargetLedger | None) -> dict[str, Any]:
        return {} if ledger is None else {"ledger": ledger}

    @property
    def episode_limit(self) -> int:
        """The target's time limit (steps per episode at most)."""
        limit = self.task.target_env(self.cfg.target).max_episode_steps
        assert limit is not None  # the registry refuses an env without one
        return limit

    @property
    def train_budget(self) -> int:
        """Target steps fine-tuning and scratch train for: the budget - or with `count_in_budget` what is
        left of it after reserving the worst case of every evaluation (and AdaBN's frames) - in whole
        rollouts of the algorithm (SB3 trains in whole rollouts, so a partial one would overrun it)."""
        cfg = self.cfg
        budget = cfg.finetune.timesteps
        if cfg.evaluation.count_in_budget:
            budget = budget_after_reserve(cfg, self.episode_limit)
        rollout = cfg.target_rollout
        return budget // rollout * rollout


def evaluation_reserve(cfg: ExperimentConfig, train: int, episode_limit: int) -> int:
    """The most target steps the evaluations of a stage training for `train` steps can take."""
    ev = cfg.evaluation
    evaluations = len(eval_grid(train, ev.every_steps)) if train >= 1 else 0
    extra = sum(m.reserve_episodes(cfg) for m in methods_of(cfg))  # e.g. a search's selection episodes
    other = cfg.perception.adabn_frames if cfg.perception is not None else 0
    return (evaluations * ev.episodes + extra + ev.final_episodes) * episode_limit + other


def budget_after_reserve(cfg: ExperimentConfig, episode_limit: int) -> int:
    """The largest training budget whose worst-case total fits `finetune.timesteps` (0: none fits)."""
    budget = cfg.finetune.timesteps
    low, high = 0, budget
    while low < high:  # the reserve only grows with the training budget: bisect
        mid = (low + high + 1) // 2
        if mid + evaluation_reserve(cfg, mid, episode_limit) <= budget:
            low = mid
        else:
            high = mid - 1
    return low


def eval_grid(budget: int, every: int) -> list[int]:
    """The steps a target-trained variant is evaluated at: 0, every, 2 every, ..., and the budget."""
    return sorted({*range(0, budget, every), budget})
