"""A target that may be a robot: every step counted, one instance when exclusive, provenance recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from tiny import set_args
from user_envs import CountingRobot

from simreal.cli import main

ROBOT_TASK: dict[str, Any] = {
    "env": "user_envs:PointMass",
    "max_episode_steps": 30,
    "randomization": {"params": [{"param": "user_envs:MASS", "dist": "uniform", "low": 0.8, "high": 2.0}]},
    "targets": {
        "robot": {"description": "the robot in the lab", "env": "user_envs:CountingRobot"},
    },
}


def _experiment(tmp_path: Path, name: str, robot: dict[str, Any], **extra: Any) -> Path:
    task = {**ROBOT_TASK, "name": name, "targets": {"robot": {**ROBOT_TASK["targets"]["robot"], **robot}}}
    data = {
        "experiment": "lab",
        "task": task,
        "target": "robot",
        "seeds": [0],
        "pretrain": {"timesteps": 128},
        "finetune": {"timesteps": 256},
        **extra,
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _report(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "runs" / "lab" / "report.json").read_text())


def _reported_total(report: dict[str, Any]) -> int:
    rows = report["variants"].values()
    return sum(
        r["target_steps"]["total"] for r in rows if r["target_steps"] and "reference" not in r["label"]
    )


def test_reported_target_steps_equal_the_robots_own_count(tmp_path: Path) -> None:
    CountingRobot.forget()
    config = _experiment(tmp_path, "CountedRobot", {}, reference={"timesteps": 256})
    args = set_args(tmp_path / "runs", "workers=1", "reference.timesteps=256", "finetune.timesteps=256")
    assert main(["run", str(config), *args]) == 0
    report = _report(tmp_path)
    reference = report["variants"]["reference"]["target_steps"]["total"]
    assert _reported_total(report) + reference == CountingRobot.steps_taken_total
    ft = report["variants"]["finetune"]["target_steps"]
    assert ft["train"] == 256 and ft["evaluation"] > 0 and ft["total"] == ft["train"] + ft["evaluation"]
    assert CountingRobot.connected == 0  # every instance opened was closed


def test_exclusive_target_never_has_two_instances_open_and_skips_comparison_stages(tmp_path: Path) -> None:
    CountingRobot.forget()
    lock = tmp_path / "robot.lock"  # a second connection from any worker process fails the run
    config = _experiment(
        tmp_path, "ExclusiveRobot", {"exclusive": True, "env_kwargs": {"lock_path": str(lock)}}
    )
    tiny = set_args(tmp_path / "runs", "workers=2", reference=None)  # scratch and reference left unset
    assert main(["run", str(config), *tiny, "--seeds", "0,1,2"]) == 0
    assert not lock.exists()  # and the last one was closed
    report = _report(tmp_path)
    assert set(report["variants"]) == {"finetune", "zeroshot_randomized", "zeroshot_nominal"}
    assert all(r["target_steps"]["max_open"] == 1 for r in report["variants"].values())
    assert _reported_total(report) > 0  # counted in the worker processes (the robot class counts there)


def test_evaluation_counts_in_the_budget(tmp_path: Path) -> None:
    CountingRobot.forget()
    extra = {"evaluation": {"count_in_budget": True, "every_steps": 64, "episodes": 1, "final_episodes": 1}}
    config = _experiment(tmp_path, "BudgetRobot", {}, reference=False, **extra)
    budget = [
        "workers=1",
        "evaluation.count_in_budget=true",
        "evaluation.episodes=1",
        "finetune.timesteps=400",
    ]
    assert main(["run", str(config), *set_args(tmp_path / "runs", *budget, reference=False)]) == 0
    for row in _report(tmp_path)["variants"].values():
        if row["target_steps"] and "zero-shot" not in row["label"]:
            assert row["target_steps"]["total"] <= 400, row  # training + evaluation within the 400 steps
            assert 0 < row["target_steps"]["train"] < 400


def test_budget_smaller_than_one_evaluation_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _experiment(tmp_path, "TinyBudgetRobot", {})
    args = set_args(
        tmp_path / "runs", "finetune.timesteps=40", "evaluation.count_in_budget=true", "reference=false"
    )
    assert main(["run", str(config), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "finetune.timesteps: 40 target steps cannot hold any training" in err
    assert not (tmp_path / "runs").exists()


def test_exclusive_target_with_several_instances_per_stage_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _experiment(tmp_path, "ManyRobots", {"exclusive": True})
    assert main(["run", str(config), *set_args(tmp_path / "runs", "algo.n_envs=2")]) == 2
    assert "algo.n_envs: 2 target instances at once, but target robot is exclusive" in capsys.readouterr().err
    assert main(["run", str(config), *set_args(tmp_path / "runs", "evaluation.n_envs=3")]) == 2
    err = capsys.readouterr().err
    assert "evaluation.n_envs: 3 target instances at once, but the target is exclusive (allowed: 1)" in err
    assert not (tmp_path / "runs").exists()


def test_provenance_and_cross_task_refusal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", *set_args(tmp_path, "scratch=false", reference=False), "--seeds", "0"]) == 0
    run = tmp_path / "quickstart"
    source = run / "pretrain_randomized/seed0/policy.pt"
    meta = json.loads(torch.load(run / "finetune/seed0/policy.pt", weights_only=True)["meta_json"])
    assert meta["source_policy"] == str(source) and len(meta["source_sha256"]) == 64
    assert meta["task"] == "InvertedPendulum" and meta["target"] == "heavy"
    # the same output directory, fine-tuned from another source: refused, not silently returned
    other = run / "pretrain_nominal/seed0/policy.pt"
    assert main(["finetune", *set_args(tmp_path, reference=False), "--seeds", "0", "--from", str(other)]) == 2
    assert "made by fine-tuning" in capsys.readouterr().err
    # a policy of another task whose spaces happen to match: refused without --allow-cross-task
    data = yaml.safe_load((run / "config.yaml").read_text())
    data["task"]["name"] = "PendulumTwin"
    data["experiment"] = "twin"
    twin = tmp_path / "twin.yaml"
    twin.write_text(yaml.safe_dump(data))
    tiny = set_args(tmp_path, reference=False)
    assert main(["finetune", str(twin), *tiny, "--seeds", "0", "--from", str(source)]) == 2
    assert "pretrained on task 'InvertedPendulum', not 'PendulumTwin'" in capsys.readouterr().err
    allow = [
        "finetune",
        str(twin),
        *tiny,
        "--seeds",
        "0",
        "--from",
        str(source),
        "--allow-cross-task",
    ]
    assert main(allow) == 0
    # a policy trained with another action history than the experiment's: one line, nothing trained
    history = set_args(tmp_path, "experiment=history", "observation.action_history=0", reference=False)
    assert main(["finetune", *history, "--seeds", "0", "--from", str(source)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "trained with observation.action_history=2, this experiment sets 0" in err
    assert not list((tmp_path / "history").rglob("policy.pt"))
