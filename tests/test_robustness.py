"""`simreal robustness`: a policy's zero-shot return over a grid of shifts, every cell on the same
episode seeds, the JSON and the heatmap agreeing, bad axes one line before anything runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from tiny import set_args
from user_envs import POINT_SOURCE

from simreal.analysis import robustness as rob
from simreal.cli import main
from simreal.schema import ConfigError
from simreal.simulation.registry import register_task

TASK = {**POINT_SOURCE, "name": "RobustPoint", "targets": {"same": {}}}


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("robustness")
    task = root / "robust_point.yaml"
    task.write_text(yaml.safe_dump(TASK))
    config = root / "exp.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "experiment": "point",
                "task": str(task),
                "target": "same",
                "pretrain": {"timesteps": 128, "nominal_baseline": False},
                "finetune": {"timesteps": 128},
            }
        )
    )
    assert main(["pretrain", str(config), *set_args(root / "runs", reference=False), "--seeds", "0"]) == 0
    return root / "runs/point/pretrain_randomized/seed0/policy.pt", task


def test_a_grid_of_a_users_parameter_and_effect(policy: tuple[Path, Path], tmp_path: Path) -> None:
    model, task = policy
    sweeps = ["--sweep", "user_envs:MASS=0.5:3.0:3", "--sweep", "user_envs:MotorSlip=0:0.5:2"]
    out = tmp_path / "map"
    assert (
        main(
            [
                "robustness",
                str(model),
                "--task",
                str(task),
                *sweeps,
                "--episodes",
                "2",
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    data = json.loads((out / "robustness.json").read_text())
    returns = np.asarray(data["returns"])
    assert returns.shape == (3, 2) and data["target_steps"] == 0
    assert [a["pretraining_range"] for a in data["axes"]] == [[0.5, 2.0], [0.0, 0.2]]
    assert (out / "robustness.png").stat().st_size > 1000 and any((out / "tensorboard").iterdir())
    figure = rob._figure(data, returns)  # the heatmap shows exactly the JSON's numbers
    assert np.array_equal(np.asarray(figure.axes[0].images[0].get_array()), returns.T)


def test_every_cell_runs_the_same_episode_seeds(
    policy: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, task_file = policy
    seen: list[tuple[int, int]] = []

    def fake_evaluate(model: Any, make_env: Any, episodes: int, seed: int, *args: Any) -> Any:
        env = make_env()
        env.reset(seed=seed)  # physics shifts apply at reset
        seen.append((seed, episodes))
        mass = float(env.unwrapped.mass)
        env.close()
        return type("R", (), {"mean_return": mass})()

    monkeypatch.setattr(rob, "evaluate", fake_evaluate)
    task = register_task(str(task_file), tmp_path)
    axes = [rob.parse_axis("user_envs:MASS/body=1:2:3", task)]
    data = rob.robustness(model, task, axes, 4, torch.device("cpu"), tmp_path / "out")
    assert seen == [(rob.SEED, 4)] * 3
    assert data["returns"] == pytest.approx([1.0, 1.5, 2.0])  # each cell's env has its shift


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ("friction=0.5:2:3", "'friction' is neither a physics parameter of RobustPoint"),
        ("user_envs:MASS/wheel=1:2:3", "user_envs:MASS has no element 'wheel' (allowed: body)"),
        ("action_delay.lag=0:3", "action_delay has no argument 'lag' (allowed: steps)"),
        ("action_delay=0:1.5", "give N for a non-integer range"),
        ("action_delay=3:1", "need LOW <= HIGH"),
        ("user_envs:MASS", "expected NAME=LOW:HIGH[:N]"),
    ],
)
def test_bad_axes_are_one_line(policy: tuple[Path, Path], tmp_path: Path, sweep: str, message: str) -> None:
    task = register_task(str(policy[1]), tmp_path)
    with pytest.raises(ConfigError) as err:
        rob.parse_axis(sweep, task)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_cli_refuses_bad_input_before_anything_runs(
    policy: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, task = policy
    out = tmp_path / "never"
    for extra in (
        [],
        ["--sweep", "a=0:1", "--sweep", "b=0:1", "--sweep", "c=0:1"],
        ["--sweep", "gravity=0:1:2"],
    ):
        assert main(["robustness", str(model), "--task", str(task), *extra, "--out", str(out)]) == 2
        assert "\n" not in capsys.readouterr().err.strip()
    assert not out.exists()
