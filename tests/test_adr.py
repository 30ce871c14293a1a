"""Automatic domain randomization: ranges grow when the policy copes at their edges, not when it fails."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tiny import set_args

from simreal.cli import main
from simreal.schema import ConfigError, parse
from simreal.simulation.adr import AdrSpec, AdrState
from simreal.simulation.randomization import RandomizationSpec, RandomizeDynamics

PARAMS = [{"param": "body_mass", "names": ["pole"], "dist": "uniform", "low": 0.5, "high": 3.0}]


def _state(**spec: float) -> AdrState:
    adr = AdrSpec(expand_above=100.0, shrink_below=50.0, boundary_prob=1.0, step=0.1, episodes=2, **spec)
    return AdrState.for_entries(adr, parse(RandomizationSpec, {"params": PARAMS}, "t").params)


def _episodes(state: AdrState, ret: float, n: int, side: str) -> None:
    for _ in range(n):
        state.pinned = (0, side)
        state.episode_return = ret
        state.end_episode()


def test_ranges_start_small_around_nominal() -> None:
    state = _state(initial_width=0.2)
    ((low, high),) = state.ranges().values()
    assert low == pytest.approx(1.0 - 0.25) and high == pytest.approx(1.0 + 0.25)  # 20% of [0.5, 3.0]


def test_a_range_grows_when_the_policy_succeeds_at_its_edge_and_not_when_it_fails() -> None:
    state = _state()
    ((low, high),) = state.ranges().values()
    _episodes(state, 150.0, 2, "high")  # succeeded at the high edge twice: it moves out by 10% of the span
    assert state.ranges()["0.body_mass/pole"] == pytest.approx([low, high + 0.25])
    _episodes(state, 10.0, 2, "low")  # failed at the low edge where it started: it stays (never out)
    assert state.ranges()["0.body_mass/pole"][0] == pytest.approx(low)
    _episodes(state, 10.0, 6, "high")  # failing after growing: back in, but not inside the initial range
    assert state.ranges()["0.body_mass/pole"][1] == pytest.approx(high)
    _episodes(state, 150.0, 2, "high")
    _episodes(state, 70.0, 2, "high")  # between the thresholds: no change
    assert state.ranges()["0.body_mass/pole"][1] == pytest.approx(high + 0.25)
    _episodes(state, 150.0, 40, "high")  # never past the declared bound
    assert state.ranges()["0.body_mass/pole"][1] == pytest.approx(3.0)


def test_draws_stay_in_the_current_range_and_edges_are_pinned() -> None:
    spec = parse(
        RandomizationSpec,
        {"params": PARAMS, "adr": {"expand_above": 1e9, "shrink_below": -1e9, "boundary_prob": 0.5}},
        "t",
    )
    env = RandomizeDynamics(gym.make("InvertedPendulum-v5"), spec)
    assert env.adr is not None
    low, high = env.adr.ranges()["0.body_mass/pole"]
    nominal = env.nominal["body_mass"][1]
    seen = []
    for seed in range(40):
        _, info = env.reset(seed=seed)
        seen.append(info["dynamics"]["body_mass/pole"] / nominal)
    assert all(low - 1e-9 <= s <= high + 1e-9 for s in seen)
    assert any(np.isclose(s, low) or np.isclose(s, high) for s in seen)  # boundary episodes happened


def test_frozen_ranges_are_the_reached_ones_and_never_move() -> None:
    grown = _state()
    _episodes(grown, 150.0, 2, "high")  # the high edge grew once
    entries = parse(RandomizationSpec, {"params": PARAMS}, "t").params
    frozen = AdrState.frozen_at(grown.spec, entries, grown.as_dict())
    assert frozen.ranges() == grown.ranges() != _state().ranges()
    rng = np.random.default_rng(0)
    for _ in range(50):  # boundary_prob is 1.0, yet nothing is pinned and nothing moves
        frozen.begin_episode(rng)
        assert frozen.pinned is None
        frozen.episode_return = 1e6
        frozen.end_episode()
    assert frozen.ranges() == grown.ranges() and frozen.updates == 0


def test_bad_adr_settings_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="shrink_below: 9 is above expand_above 5"):
        parse(RandomizationSpec, {"params": PARAMS, "adr": {"expand_above": 5, "shrink_below": 9}}, "t.yaml")
    fixed = [{"param": "body_mass", "value": 1.2}]
    with pytest.raises(ConfigError, match="adr: needs uniform or log_uniform params"):
        parse(RandomizationSpec, {"params": fixed, "adr": {"expand_above": 5, "shrink_below": 1}}, "t.yaml")
    with pytest.raises(ConfigError, match="allowed: body_mass > 0"):  # the most ADR may reach is checked too
        negative = [{"param": "body_mass", "dist": "uniform", "low": -1.0, "high": 2.0}]
        RandomizeDynamics(
            gym.make("InvertedPendulum-v5"),
            parse(
                RandomizationSpec, {"params": negative, "adr": {"expand_above": 5, "shrink_below": 1}}, "t"
            ),
        )


def test_pretraining_with_adr_logs_and_saves_the_ranges(tmp_path: Path) -> None:
    adr = "{expand_above: 5, shrink_below: 1, boundary_prob: 0.5, episodes: 2}"
    task = {
        "name": "AdrPendulum",
        "env": "InvertedPendulum-v5",
        "randomization": {"params": PARAMS, "adr": adr},
        "targets": {"heavy": {"physics": [{"param": "body_mass", "names": ["pole"], "value": 2.5}]}},
    }
    import yaml

    task["randomization"]["adr"] = yaml.safe_load(adr)
    config = tmp_path / "exp.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "experiment": "adr",
                "task": task,
                "target": "heavy",
                "pretrain": {"timesteps": 512},
                "finetune": {"timesteps": 128},
            }
        )
    )
    args = set_args(
        tmp_path / "runs",
        "scratch=false",
        "pretrain.timesteps=512",
        "pretrain.nominal_baseline=false",
        reference=False,
    )
    assert main(["run", str(config), *args, "--seeds", "0"]) == 0
    stage = tmp_path / "runs" / "adr" / "pretrain_randomized" / "seed0"
    acc = EventAccumulator(str(stage))
    acc.Reload()
    assert "adr/0.body_mass/pole/high" in acc.Tags()["scalars"]
    import json

    meta = json.loads(torch.load(stage / "policy.pt", weights_only=True)["meta_json"])
    low, high = meta["adr"]["ranges"]["0.body_mass/pole"]
    assert 0.5 <= low <= 1.0 <= high <= 3.0 and meta["adr"]["bounds"]["0.body_mass/pole"] == [0.5, 3.0]


def test_envs_sharing_one_state_file_each_episode_under_its_own_edge() -> None:
    spec = parse(
        RandomizationSpec,
        {"params": PARAMS, "adr": {"expand_above": 1e9, "shrink_below": -1e9, "boundary_prob": 1.0}},
        "t",
    )
    state = AdrState.for_entries(spec.adr, spec.params)  # type: ignore[arg-type]
    a, b = (RandomizeDynamics(gym.make("InvertedPendulum-v5"), spec, adr=state) for _ in range(2))
    a.reset(seed=0)
    pin_a = state.pinned
    b.reset(seed=1)  # b's episode starts while a's runs (as in a vec env)
    pin_b = state.pinned
    return_a = 0.0
    done = False
    while not done:
        _, reward, term, trunc, _ = a.step(np.array([1.0]))  # a falls over fast
        b.step(np.array([0.0]))
        return_a += float(reward)
        done = term or trunc
    assert pin_a is not None and pin_b is not None
    filed = state.dims[0].buffers[pin_a[1]]
    assert filed[-1] == pytest.approx(return_a)  # a's own return (not b's rewards too), under a's edge
