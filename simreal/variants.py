"""Builders behind the registered randomized and target ids (see `envs/__init__.py`).

Wrapper order, innermost first: nominal env (with its TimeLimit) -> `RandomizeDynamics` -> effects in
YAML order. Physics is changed at reset; effects act on every step.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

import envs
from simreal.effects import apply_effects
from simreal.randomization import RandomizationSpec, RandomizeDynamics
from simreal.tasks import load_task, target_spec, task_file


def make_randomized(task: str, **kwargs: Any) -> gym.Env[Any, Any]:
    """The randomized source sim of `task`: physics and sensing resampled per episode."""
    spec = load_task(task)
    env = gym.make(envs.TASKS[task].nominal_id, disable_env_checker=True, **kwargs)
    env = RandomizeDynamics(env, spec.randomization, where=f"{task_file(task)}: randomization")
    return apply_effects(env, spec.source_effects)


def make_target(task: str, target: str, **kwargs: Any) -> gym.Env[Any, Any]:
    """A real-like target of `task`: fixed shifted physics plus its ordered effects."""
    spec = target_spec(task, target)
    env = gym.make(envs.TASKS[task].nominal_id, disable_env_checker=True, **kwargs)
    physics = RandomizationSpec(params=spec.physics)
    env = RandomizeDynamics(env, physics, where=f"{task_file(task)}: targets.{target}.physics")
    return apply_effects(env, spec.effects)
