"""The `calibrate:` section of `simreal run`: collect -> fit -> pretrain on the calibrated ranges ->
zero-shot and fine-tune, with the calibration's target steps inside those variants' budgets, on an
exclusive robot that is never opened twice; bad sections refused in one line before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tiny import robot_task, set_args
from user_envs import CountingRobot

from simreal.cli import main
from simreal.simulation.tasks import load_task
from simreal.training.engine.artifacts import load_policy

BUDGET = 256  # 4 rollouts of 64; calibration's 2 episodes of 30 steps take the first one


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The robot's task file (one per module: its name stems ids registered once per process)."""
    return robot_task(tmp_path_factory.mktemp("robot"), "RunCalibratedRobot", mass_high=1.0)


def _experiment(root: Path, task: Path, calibrate: dict[str, object]) -> Path:
    config = root / "exp.yaml"
    body = {
        "experiment": "cal",
        "task": str(task),
        "target": "robot",
        "seeds": [0],
        "observation": {"action_history": 1},  # the policy's own wrapper, applied once
        "calibrate": calibrate,
    }
    config.write_text(yaml.safe_dump(body))
    return config


def _args(root: Path) -> list[str]:
    return set_args(
        root / "runs", f"finetune.timesteps={BUDGET}", "pretrain.nominal_baseline=false", reference=False
    )


def test_the_loop_runs_inside_a_run_with_calibration_counted_in_the_budget(
    tmp_path: Path, task: Path
) -> None:
    CountingRobot.forget()
    config = _experiment(tmp_path, task, {"episodes": 2, "excite": 0.2, "segments": 16, "warm_start": True})
    assert main(["run", str(config), *_args(tmp_path)]) == 0
    run = tmp_path / "runs" / "cal"
    report = json.loads((run / "report.json").read_text())
    rows = report["variants"]
    assert {"zeroshot_calibrated", "finetune_calibrated", "finetune", "zeroshot_randomized"} <= set(rows)

    collected = json.loads((run / "calibration" / "seed0" / "collected.json").read_text())
    assert collected["collected_steps"] == 2 * 30
    for variant in ("zeroshot_calibrated", "finetune_calibrated"):
        steps = rows[variant]["target_steps"]["per_seed"][0]
        assert steps["other"] == 60  # the calibration episodes, in this variant's ledger
        assert steps["max_open"] == 1
    tuned = rows["finetune_calibrated"]["target_steps"]["per_seed"][0]
    assert tuned["train"] == BUDGET - 64  # the rest of the budget, in whole rollouts
    assert tuned["total"] <= BUDGET + rows["finetune"]["target_steps"]["per_seed"][0]["evaluation"]
    plain = rows["finetune"]["target_steps"]["per_seed"][0]
    assert tuned["train"] + 64 == plain["train"]  # equal budgets: calibration replaced a rollout

    # the curves: the randomized policy acted while calibrating (the same evaluation as its zero-shot)
    zs = json.loads((run / "zeroshot_randomized" / "seed0" / "curve.json").read_text())
    for variant in ("zeroshot_calibrated", "finetune_calibrated"):
        curve = json.loads((run / variant / "seed0" / "curve.json").read_text())
        assert [p["step"] for p in curve] == [p["step"] for p in zs]
        assert curve[0]["calibrating"] and curve[0]["mean_return"] == zs[0]["mean_return"]
        assert not any(p.get("calibrating") for p in curve[1:])

    calibration = json.loads((run / "calibration" / "seed0" / "calibration.json").read_text())
    assert {p["param"] for p in calibration["parameters"]} == {
        "user_envs:MASS",
        "user_envs:GAIN",
        "action_delay.steps",
    }
    calibrated = load_task(run / "calibration" / "seed0" / "calibrated_task.yaml")
    assert calibrated.name.startswith("RunCalibratedRobotCalibrated")
    meta = load_policy(run / "pretrain_calibrated" / "seed0" / "policy.pt").meta
    assert meta["calibrated_from"] == "RunCalibratedRobot" and meta["task"] == calibrated.name
    assert meta["initialized_from"].endswith("pretrain_randomized/seed0/policy.pt")

    events = EventAccumulator(str(run / "calibration" / "seed0"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert (
        "calibration/user_envs:MASS/identified" in tags and "calibration/user_envs:MASS/source_high" in tags
    )
    assert "## Calibration" in (run / "report.md").read_text()
    assert report["calibration"]["parameters"]["user_envs:MASS"]["source_range"] == [0.5, 1.0]
    assert CountingRobot.connected == 0


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"params": ["user_envs:FRICTION"]}, "calibrate.params: 'user_envs:FRICTION' is not a parameter"),
        ({"excite": 1.5}, "calibrate.excite: 1.5 lies beyond the action bounds"),
        (
            {"max_steps": 250},
            "calibrate.max_steps: 250 target steps of collection leave less than one rollout",
        ),
    ],
)
def test_a_bad_section_is_one_line_before_anything_is_written(
    tmp_path: Path, task: Path, capsys: pytest.CaptureFixture[str], section: dict[str, object], message: str
) -> None:
    CountingRobot.forget()
    config = _experiment(tmp_path, task, section)
    assert main(["run", str(config), *_args(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "runs").exists() and CountingRobot.steps_taken_total == 0


def test_a_run_and_the_command_share_their_defaults_and_the_help_states_them() -> None:
    import argparse

    from simreal.cli.parser import _parser
    from simreal.sections.calibrate import CalibrateConfig
    from simreal.simulation.calibration.replay import SEGMENTS
    from simreal.simulation.calibration.task import STDS

    assert CalibrateConfig().segments == SEGMENTS  # chosen on panel targets once, for both
    assert CalibrateConfig().stds == STDS
    [sub] = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    text = " ".join(sub.choices["calibrate"].format_help().split())  # however the terminal wraps it
    assert f"(default {SEGMENTS};" in text and f"(default {STDS:g})" in text
