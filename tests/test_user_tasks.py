"""Bring your own robot: task files, env classes, targets on other envs, custom effects and parameters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import yaml
from tiny import TINY, set_args
from user_envs import POINT_SOURCE, HeavyPointMass, MotorSlip, PointMass

from simreal import register_task
from simreal.cli import main
from simreal.config import load_config
from simreal.schema import ConfigError
from simreal.simulation.tasks import load_task

POINT_TASK: dict[str, Any] = {
    **POINT_SOURCE,
    "targets": {
        "real": {
            "description": "the heavy robot, another env class",
            "env": "user_envs:HeavyPointMass",
            "env_kwargs": {"stiction": 0.1},
            "effects": [{"type": "action_delay", "steps": 1}],
        },
        "sim_shift": {"physics": [{"param": "user_envs:MASS", "value": 1.8}]},
    },
}
MOTORS = "user_envs:WrongMotors"  # a target with a second motor


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _experiment(tmp_path: Path, task: Any, target: str, **extra: Any) -> Path:
    data = {
        "experiment": "mine",
        "task": task,
        "target": target,
        "seeds": [0],
        "algo": {"name": "PPO"},
        "pretrain": {"timesteps": 128},
        "finetune": {"timesteps": 128},
        **extra,
    }
    return _write(tmp_path / "exp.yaml", data)


def test_gymnasium_env_the_project_does_not_ship_runs_end_to_end_with_two_workers(tmp_path: Path) -> None:
    task = {
        "env": "InvertedDoublePendulum-v5",
        "randomization": {"params": [{"param": "body_mass", "dist": "uniform", "low": 0.8, "high": 1.2}]},
        "source_effects": [{"type": "observation_noise", "std": [0.0, 0.01]}],
        "targets": {
            "heavy": {
                "description": "heavier poles, weaker motor",
                "physics": [
                    {"param": "body_mass", "names": ["pole", "pole2"], "value": 1.5},
                    {"param": "actuator_gain", "value": 0.8},
                ],
            }
        },
    }
    _write(tmp_path / "tasks" / "double_pendulum.yaml", task)
    config = _experiment(tmp_path, "tasks/double_pendulum.yaml", "heavy")
    args = ["run", str(config), *set_args(tmp_path / "runs", "workers=2"), "--seeds", "0,1"]
    assert main(args) == 0
    run = tmp_path / "runs" / "mine"
    report = json.loads((run / "report.json").read_text())
    assert report["task"] == "DoublePendulum"  # the file stem, camel-cased
    assert set(report["variants"]) == {
        "finetune",
        "scratch",
        "zeroshot_randomized",
        "zeroshot_nominal",
        "reference",
    }
    assert report["variants"]["finetune"]["final_return"]["n"] == 2
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["task"]["env"] == "InvertedDoublePendulum-v5"  # the task travels with the run
    assert main(["report", str(run)]) == 0


def test_env_class_as_source_and_another_class_as_target(tmp_path: Path) -> None:
    config = _experiment(tmp_path, {"name": "Point", **POINT_TASK}, "real", pretrain={"timesteps": 128})
    assert main(["run", str(config), *set_args(tmp_path / "runs", "workers=1")]) == 0
    run = tmp_path / "runs" / "mine"
    policy = run / "zeroshot_randomized" / "seed0"
    assert (policy / "final.json").exists()
    art = json.loads((run / "report.json").read_text())
    assert art["task"] == "Point" and art["target"] == "real"
    target = gym.make("simreal/Point-Target-Real-v0")
    assert isinstance(target.unwrapped, HeavyPointMass) and target.unwrapped.stiction == 0.1
    assert isinstance(gym.make("simreal/Point-v0").unwrapped, PointMass)
    out = tmp_path / "eval.json"
    task_file = _write(tmp_path / "point.yaml", {"name": "Point", **POINT_TASK})
    evaluate = [
        "evaluate",
        str(run / "finetune/seed0/policy.pt"),
        "--task",
        str(task_file),
        "--target",
        "real",
    ]
    assert main([*evaluate, "--episodes", "2", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["env"] == "simreal/Point-Target-Real-v0"


def test_custom_effect_and_parameter_are_drawn_per_episode_and_recorded() -> None:
    task = register_task({"name": "PointDraws", **POINT_TASK})
    env = gym.make(task.randomized_id)
    masses, slips = set(), set()
    for episode in range(6):
        _, info = env.reset(seed=episode)
        mass = info["dynamics"]["MASS/body"]
        assert 0.5 <= mass <= 2.0 and env.unwrapped.mass == pytest.approx(mass)
        assert 0.7 <= info["dynamics"]["GAIN/motor"] <= 1.3
        slip = info["effects"]["motor_slip.prob"]
        assert 0.0 <= slip <= 0.2
        masses.add(mass)
        slips.add(slip)
    assert len(masses) == 6 and len(slips) == 6
    effect = env.get_wrapper_attr("slipped")
    assert isinstance(effect, int)
    wrapper = env
    while not isinstance(wrapper, MotorSlip):
        wrapper = wrapper.env  # type: ignore[attr-defined]
    wrapper.now["prob"] = 1.0
    before = wrapper.slipped
    env.step(np.ones(1, dtype=np.float32))
    assert wrapper.slipped == before + 1
    shifted = gym.make(task.target_id("sim_shift"))
    _, info = shifted.reset(seed=0)
    assert shifted.unwrapped.mass == 1.8 and info["dynamics"] == {"MASS/body": 1.8}


def test_register_task_from_python_gives_ids_and_is_idempotent(tmp_path: Path) -> None:
    path = _write(tmp_path / "my_point.yaml", POINT_TASK)
    task = register_task(path)
    assert task.name == "MyPoint"
    assert task.target_id("sim_shift") == "simreal/MyPoint-Target-SimShift-v0"
    assert register_task(path) is task
    changed = {**POINT_TASK, "max_episode_steps": 41}
    with pytest.raises(ConfigError, match="name 'MyPoint' is taken by another task"):
        register_task(_write(tmp_path / "again" / "my_point.yaml", changed))


def test_invalid_target_physics_fails_before_the_run_directory_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = {
        **POINT_TASK,
        "targets": {"real": {"physics": [{"param": "user_envs:MASS", "value": 0.0, "mode": "abs"}]}},
    }
    config = _experiment(tmp_path, {"name": "PointBadPhysics", **bad}, "real")
    assert main(["run", str(config), *set_args(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "targets.real.physics.0" in err and "allowed: MASS > 0" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"task": "tasks/missing.yaml"}, "missing.yaml: task file not found"),
        (
            {"task": {"name": "NoSuchId", "env": "NoSuchEnv-v9"}},
            "list the module that registers it under imports:",
        ),
        (
            {"task": {"name": "NoModule", "env": "no_such_pkg.envs:Arm"}},
            "cannot import module 'no_such_pkg.envs'",
        ),
        ({"task": {"name": "NotEnv", "env": "user_envs:NOT_A_PARAM"}}, "not an env class, env factory"),
        ({"task": {"name": "NoLimit", "env": "user_envs:PointMass"}}, "set max_episode_steps"),
        (
            {
                "task": {
                    **POINT_TASK,
                    "name": "NoBuiltin",
                    "targets": {"t": {"physics": [{"param": "body_mass", "value": 2.0}]}},
                },
                "target": "t",
            },
            "no built-in physics parameters",
        ),
        (
            {
                "task": {
                    **POINT_TASK,
                    "name": "BadParamRef",
                    "targets": {"t": {"physics": [{"param": "user_envs:NOT_A_PARAM", "value": 1.0}]}},
                },
                "target": "t",
            },
            "not a simreal CustomParam",
        ),
        (
            {
                "task": {
                    **POINT_TASK,
                    "name": "Mismatch",
                    "targets": {"t": {"env": "user_envs:WrongSpaces"}},
                },
                "target": "t",
            },
            "observation space Box(shape=(3,), float32) does not match the source's Box(shape=(2,), float32)",
        ),
        (
            {
                "task": {
                    **POINT_TASK,
                    "name": "BadEffect",
                    "targets": {"t": {"effects": [{"type": "user_envs:PointMass"}]}},
                },
                "target": "t",
            },
            "not a gymnasium.Wrapper subclass",
        ),
        (
            {
                "task": {
                    **POINT_TASK,
                    "name": "BadRange",
                    "targets": {"t": {"effects": [{"type": "user_envs:MotorSlip", "prob": 1.5}]}},
                },
                "target": "t",
            },
            "prob must be in [0, 1], got 1.5",
        ),
        (
            {
                "task": {
                    **POINT_TASK,
                    "name": "BadArg",
                    "targets": {"t": {"effects": [{"type": "user_envs:MotorSlip", "p": 0.1}]}},
                },
                "target": "t",
            },
            "effects.0.p: unknown key (allowed: type, prob)",
        ),
        (
            {
                "task": {**POINT_TASK, "name": "MotorMismatch", "targets": {"t": {"env": MOTORS}}},
                "target": "t",
                "observation": {"action_history": 2},
            },
            "the target's action space Box(shape=(2,), float32) does not match the source's "
            "Box(shape=(1,), float32)",
        ),
    ],
)
def test_bad_tasks_are_one_line_errors_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, Any], message: str
) -> None:
    config = _experiment(tmp_path, POINT_TASK, change.get("target", "real"))
    data = yaml.safe_load(config.read_text())
    data["task"] = change["task"]
    data.update({k: v for k, v in change.items() if k not in ("task", "target")})
    config.write_text(yaml.safe_dump(data))
    assert main(["run", str(config), *set_args(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err, err
    assert not (tmp_path / "runs").exists()


def test_envs_lists_a_user_task_with_ids_parameters_and_targets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path / "listed_point.yaml", POINT_TASK)
    assert main(["envs", "--task", str(path)]) == 0
    out = capsys.readouterr().out
    assert "simreal/ListedPoint-Rand-v0" in out and "simreal/ListedPoint-Target-Real-v0" in out
    assert "the heavy robot, another env class" in out and "[env user_envs:HeavyPointMass]" in out
    assert "!" not in out  # every target fits the source


def test_envs_reports_a_target_whose_spaces_do_not_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = {**POINT_TASK, "name": "ListedMismatch", "targets": {"two_motors": {"env": MOTORS}}}
    assert main(["envs", "--task", str(_write(tmp_path / "mismatch.yaml", task))]) == 0
    out = capsys.readouterr().out
    assert "! the target's action space Box(shape=(2,), float32) does not match the source's" in out


def test_a_run_of_a_user_task_is_read_back_without_its_code(tmp_path: Path) -> None:
    data = {
        "experiment": "x",
        "task": {**POINT_TASK, "name": "Gone", "env": "gone_pkg:Robot", "imports": ["gone_pkg"]},
        "target": "real",
        "pretrain": {"timesteps": 1},
        "finetune": {"timesteps": 1},
    }
    data["task"]["targets"]["real"]["effects"] = [{"type": "gone_pkg:Effect", "x": 1}]
    path = _write(tmp_path / "config.yaml", data)
    with pytest.raises(ConfigError, match="cannot import module 'gone_pkg'"):
        load_config(path)
    assert load_config(path, resolve=False).task.name == "Gone"


def test_inline_task_needs_a_name_and_packaged_keys_still_work(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"task\.name: required for an inline task"):
        load_task({"env": "InvertedPendulum-v5"})
    assert load_config(None, TINY).task.name == "InvertedPendulum"
