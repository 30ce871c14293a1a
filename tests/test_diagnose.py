"""`simreal diagnose`: the dynamics gap is ~1 on a target like the source and grows with a known shift."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from tiny import set_args

from simreal.analysis.diagnose import diagnose
from simreal.cli import main

TASK = {
    "name": "DiagnosedPoint",
    "env": "user_envs:PointMass",
    "max_episode_steps": 40,
    "randomization": {"params": [{"param": "user_envs:MASS", "dist": "uniform", "low": 0.9, "high": 1.1}]},
    "targets": {
        "same": {"description": "the source's own physics"},
        "heavier": {"physics": [{"param": "user_envs:MASS", "value": 2.0, "mode": "abs"}]},
        "heaviest": {"physics": [{"param": "user_envs:MASS", "value": 6.0, "mode": "abs"}]},
    },
}


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("diagnose")
    config = root / "exp.yaml"
    data = {
        "experiment": "point",
        "task": TASK,
        "target": "same",
        "pretrain": {"timesteps": 256},
        "finetune": {"timesteps": 128},
    }
    config.write_text(yaml.safe_dump(data))
    args = set_args(
        root / "runs",
        "pretrain.timesteps=256",
        "pretrain.nominal_baseline=false",
        "scratch=false",
        reference=False,
    )
    assert main(["pretrain", str(config), *args, "--seeds", "0"]) == 0
    return root / "runs" / "point" / "pretrain_randomized" / "seed0" / "policy.pt"


def test_dynamics_gap_is_about_one_on_the_source_itself_and_grows_with_the_shift(policy: Path) -> None:
    cpu = torch.device("cpu")
    same = diagnose(policy, "simreal/DiagnosedPoint-Target-Same-v0", 4, 0, cpu)
    heavier = diagnose(policy, "simreal/DiagnosedPoint-Target-Heavier-v0", 4, 0, cpu)
    heaviest = diagnose(policy, "simreal/DiagnosedPoint-Target-Heaviest-v0", 4, 0, cpu)
    assert 0.5 < same["dynamics_gap"]["score"] < 2.0
    assert (
        same["dynamics_gap"]["score"] < heavier["dynamics_gap"]["score"] < heaviest["dynamics_gap"]["score"]
    )
    assert heaviest["dynamics_gap"]["score"] > 5.0
    assert same["target_steps"]["total"] == 4 * 40  # every target step counted (4 episodes of 40)
    assert heaviest["verdict"]["action"] == "widen_randomization"
    assert heaviest["verdict"]["widen"] == ["MASS/body"]  # outside the [0.9, 1.1] pretraining saw
    assert same["verdict"]["action"] == "deploy_zero_shot"


def test_cli_writes_the_four_sections(policy: Path, tmp_path: Path) -> None:
    out = tmp_path / "diag"
    assert (
        main(
            [
                "diagnose",
                str(policy),
                "--target",
                "simreal/DiagnosedPoint-Target-Heavier-v0",
                "--episodes",
                "3",
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    data = json.loads((out / "diagnose.json").read_text())
    assert {"observation_shift", "dynamics_gap", "critic_calibration", "verdict"} <= set(data)
    assert 0.0 <= data["observation_shift"]["auc"] <= 1.0
    assert (out / "diagnose.md").read_text().startswith("# Diagnosis")
    assert main(["diagnose", str(policy), "--target", "simreal/Nope-v0"]) == 2


def test_diagnose_takes_a_users_target_as_evaluate_does(policy: Path, tmp_path: Path) -> None:
    """`--task FILE --target NAME` (the user's task file, its target by name) and `--import MODULE`."""
    task = tmp_path / "point.yaml"
    task.write_text(yaml.safe_dump({**TASK, "name": "DiagnosedPointFile"}))
    out = tmp_path / "diag"
    common = ["--episodes", "2", "--out", str(out), "--device", "cpu"]
    assert main(["diagnose", str(policy), "--task", str(task), "--target", "heaviest", *common]) == 0
    data = json.loads((out / "diagnose.json").read_text())
    assert data["verdict"]["action"] == "widen_randomization"
    by_id = ["--import", "user_envs", "--target", "simreal/DiagnosedPoint-Target-Heaviest-v0"]
    assert main(["diagnose", str(policy), *by_id, *common]) == 0
    assert main(["diagnose", str(policy), "--env", "simreal/DiagnosedPoint-Target-Same-v0", *common]) == 0


def test_diagnose_target_errors_are_one_line(
    policy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for extra, expected in (
        (["--task", "inverted_pendulum", "--target", "nope"], "nope"),
        (["--import", "no_such_module_here", "--target", "x-v0"], "--import.0: cannot import module"),
        ([], "--target: required"),
    ):
        assert main(["diagnose", str(policy), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and expected in err
