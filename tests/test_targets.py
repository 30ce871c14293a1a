"""Target presets: each declared physics shift is applied exactly, effects are stacked in order."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from simreal.simulation.physics import physics_of
from simreal.simulation.randomization import RandomizeDynamics
from simreal.simulation.registry import PACKAGED
from simreal.simulation.tasks import load_task

CASES = [(key, target) for key, task in sorted(PACKAGED.items()) for target in task.spec.targets]
SAME_ENV = [(k, t) for k, t in CASES if PACKAGED[k].spec.targets[t].env is None]  # shifts of the task's env


def _wrappers(env: gym.Env) -> list[gym.Env]:
    chain = []
    while isinstance(env, gym.Wrapper):
        chain.append(env)
        env = env.env
    return chain


@pytest.mark.parametrize(("key", "target"), SAME_ENV)
def test_target_parameters_differ_from_nominal_as_declared(key: str, target: str) -> None:
    task = PACKAGED[key]
    spec = load_task(key).targets[target]
    nominal_env = gym.make(task.nominal_id)
    nominal = physics_of(nominal_env)
    env = gym.make(task.target_id(target))
    env.reset(seed=0)
    shifted = physics_of(env)
    assert spec.physics, "a target of the task's own env must shift its physics"
    for p in spec.physics:
        names = nominal.element_names(p.param)
        idx = [names.index(n) for n in (p.names or names)]
        before = nominal.get_param(p.param)[idx]
        after = shifted.get_param(p.param)[idx]
        assert p.value is not None
        expected = {"scale": before * p.value, "abs": np.full_like(before, p.value), "add": before + p.value}[
            p.mode
        ]
        np.testing.assert_allclose(after, expected, err_msg=f"{key}/{target}: {p.param}")
        assert not np.allclose(after, before), f"{key}/{target}: {p.param} equals nominal"
    env.reset(seed=1)  # fixed physics: the same values at every reset
    for p in spec.physics:
        names = nominal.element_names(p.param)
        idx = [names.index(n) for n in (p.names or names)]
        assert shifted.get_param(p.param)[idx] == pytest.approx(physics_of(env).get_param(p.param)[idx])
    chain = _wrappers(env)
    assert any(isinstance(w, RandomizeDynamics) for w in chain)
    effect_names = [type(w).__name__ for w in chain]
    for effect in spec.effects:
        assert any(type(effect.wrap(gym.make(task.nominal_id))).__name__ == n for n in effect_names)
    env.close()
    nominal_env.close()


@pytest.mark.parametrize("key", sorted(PACKAGED))
def test_extrapolation_targets_lie_outside_the_training_range(key: str) -> None:
    spec = load_task(key)
    source = {(p.param, p.names): p for p in spec.randomization.params}
    for name, target in spec.targets.items():
        outside = False
        for p in target.physics:
            for (param, names), src in source.items():
                if param != p.param or src.mode != p.mode or p.value is None:
                    continue
                if names is None or p.names is None or set(p.names) & set(names):
                    low, high = src.support()
                    outside |= not (low <= p.value <= high)
        assert outside == target.extrapolation, f"{key}/{name}: extrapolation flag disagrees with the ranges"
