"""Contract tests over every effect: env checkers, seeded reproducibility, reset-info records."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from fakes import CounterEnv
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from simreal.simulation.effects import EFFECTS, INFO_KEY, apply_effects, parse_effects, preset_effects

# One fixed and one ranged example of every effect, as YAML data.
FIXED: dict[str, dict[str, Any]] = {
    "observation_noise": {"std": 0.3, "bias_std": 0.2},
    "action_noise": {"std": 0.3},
    "action_delay": {"steps": 2},
    "observation_delay": {"steps": 2},
    "dropped_observation": {"prob": 0.3},
    "stuck_observation": {"prob": 0.3},
    "actuator_dead_zone": {"threshold": 0.3},
    "actuator_saturation": {"limit": 0.5},
    "control_jitter": {"max_extra_steps": 2, "prob": 0.3},
}
RANGED: dict[str, dict[str, Any]] = {
    "observation_noise": {"std": [0.1, 0.5], "bias_std": [0.0, 0.3]},
    "action_noise": {"std": [0.1, 0.5]},
    "action_delay": {"steps": [0, 4]},
    "observation_delay": {"steps": [0, 4]},
    "dropped_observation": {"prob": [0.1, 0.5]},
    "stuck_observation": {"prob": [0.1, 0.5]},
    "actuator_dead_zone": {"threshold": [0.1, 0.5]},
    "actuator_saturation": {"limit": [0.2, 0.9]},
    "control_jitter": {"max_extra_steps": [1, 3], "prob": [0.1, 0.5]},
}


def wrapped(kind: str, params: dict[str, Any], **env_kwargs: Any) -> gym.Env[Any, Any]:
    return apply_effects(CounterEnv(**env_kwargs), parse_effects([{"type": kind, **params}], "test"))


def rollout(env: gym.Env[Any, Any], seed: int, episodes: int = 3, steps: int = 15) -> list[Any]:
    """Everything the agent sees over a few episodes, with a fixed action sequence."""
    box = env.action_space
    assert isinstance(box, gym.spaces.Box)
    rng = np.random.default_rng(1234)
    actions = rng.uniform(box.low, box.high, size=(steps, *box.shape)).astype(box.dtype)
    seen: list[Any] = []
    for episode in range(episodes):
        obs, info = env.reset(seed=seed if episode == 0 else None)
        seen += [obs.tolist(), info]
        for action in actions:
            obs, reward, terminated, truncated, info = env.step(action)
            seen += [obs.tolist(), float(reward), terminated, truncated]
            if terminated or truncated:
                break
    return seen


def test_examples_cover_every_registered_effect() -> None:
    assert set(FIXED) == set(RANGED) == set(EFFECTS)


@pytest.mark.parametrize("obs_bounds", [None, (-2.0, 2.0)])
@pytest.mark.parametrize("kind", sorted(EFFECTS))
def test_passes_gymnasium_and_sb3_checkers(kind: str, obs_bounds: tuple[float, float] | None) -> None:
    for params in (FIXED[kind], RANGED[kind]):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*different from the unwrapped.*")
            gym_check_env(wrapped(kind, params, obs_bounds=obs_bounds), skip_render_check=True)
        sb3_check_env(wrapped(kind, params, obs_bounds=obs_bounds), warn=True, skip_render_check=True)


@pytest.mark.parametrize("preset", ["easy", "hard"])
def test_preset_stacks_pass_checkers(preset: str) -> None:
    env = apply_effects(CounterEnv(obs_bounds=(-3.0, 3.0)), preset_effects(preset))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*different from the unwrapped.*")
        gym_check_env(env, skip_render_check=True)
    sb3_check_env(env, warn=True, skip_render_check=True)


@pytest.mark.parametrize("kind", sorted(EFFECTS))
def test_same_seed_same_outputs_different_seed_differs(kind: str) -> None:
    first = rollout(wrapped(kind, RANGED[kind]), seed=7)
    again = rollout(wrapped(kind, RANGED[kind]), seed=7)
    other = rollout(wrapped(kind, RANGED[kind]), seed=8)
    assert first == again
    assert first != other


def test_reset_info_merges_effects_of_the_whole_stack() -> None:
    specs = parse_effects([{"type": kind, **FIXED[kind]} for kind in sorted(EFFECTS)], "test")
    specs += parse_effects([{"type": "action_delay", "steps": 4}], "test")
    env = apply_effects(CounterEnv(), specs)
    _, info = env.reset(seed=0)
    effects = info[INFO_KEY]
    assert all(isinstance(value, float) for value in effects.values())
    assert effects["action_delay.steps"] == 2.0
    assert effects["action_delay_2.steps"] == 4.0
    assert effects["observation_noise.std"] == pytest.approx(0.3)
    assert effects["control_jitter.max_extra_steps"] == 2.0
    prefixes = {key.split(".")[0] for key in effects}
    assert prefixes == set(EFFECTS) | {"action_delay_2"}
    _, _, _, _, step_info = env.step(env.action_space.sample())
    assert INFO_KEY not in step_info


def test_reset_info_keeps_what_the_inner_env_reported() -> None:
    class InfoEnv(gym.Wrapper[Any, Any, Any, Any]):
        def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
            obs, _ = self.env.reset(**kwargs)
            return obs, {"inner": 1, INFO_KEY: {"physics.mass": 2.0}}

    env = apply_effects(InfoEnv(CounterEnv()), parse_effects([{"type": "action_noise", "std": 0.1}], "t"))
    _, info = env.reset(seed=0)
    assert info["inner"] == 1
    assert info[INFO_KEY] == {"physics.mass": 2.0, "action_noise.std": pytest.approx(0.1)}


@pytest.mark.parametrize("kind", sorted(EFFECTS))
def test_non_box_spaces_are_rejected_naming_wrapper_and_space(kind: str) -> None:
    spec = parse_effects([{"type": kind, **FIXED[kind]}], "test")[0]
    env = CounterEnv()
    env.observation_space = gym.spaces.Discrete(4)  # type: ignore[assignment]
    env.action_space = gym.spaces.Discrete(3)  # type: ignore[assignment]
    with pytest.raises(ValueError, match=r"needs a continuous \(float\) Box .*Discrete") as err:
        spec.wrap(env)
    assert spec.wrapper.__name__ in str(err.value)


def test_registered_env_with_all_effects_passes_checker_and_is_recreated_from_its_spec() -> None:
    """With a spec, gymnasium's checker also compares seeded observations and rebuilds the stack."""
    specs = parse_effects([{"type": kind, **RANGED[kind]} for kind in sorted(EFFECTS)], "test")
    env = apply_effects(gym.make("Pendulum-v1"), specs)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*different from the unwrapped.*")
        gym_check_env(env, skip_render_check=True)
    assert env.spec is not None
    recreated = env.spec.make()
    assert rollout(recreated, seed=3) == rollout(env, seed=3)
    assert [w.name for w in env.spec.additional_wrappers][-len(specs) :] == [
        spec.wrapper.__name__ for spec in specs
    ]
