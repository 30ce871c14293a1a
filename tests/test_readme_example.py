"""The "Your own robot" guide's example (docs/guides/own-robot.md), run exactly as written (files from its
code blocks)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import gymnasium as gym
import pytest
from tiny import set_args

from simreal.cli import main

README = Path(__file__).resolve().parents[1] / "docs" / "guides" / "own-robot.md"


def _files() -> dict[str, str]:
    """Every code block of the guide whose first line is a comment naming a file under my_robot/."""
    blocks = re.findall(r"```(?:yaml|python)\n(.*?)```", README.read_text(), flags=re.S)
    files = {}
    for block in blocks:
        first = block.splitlines()[0]
        named = re.match(r"# (my_robot/\S+)", first)
        if named:
            files[named.group(1)] = block
    return files


def test_readme_lists_the_whole_example() -> None:
    assert set(_files()) == {
        "my_robot/hopper.yaml",
        "my_robot/params.py",
        "my_robot/effects.py",
        "my_robot/driver.py",
        "my_robot/experiment.yaml",
    }


def test_readme_example_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, text in _files().items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "my_robot" / "__init__.py").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert main(["envs", "--task", "my_robot/hopper.yaml"]) == 0
        listing = capsys.readouterr().out
        assert "simreal/Hopper-Target-Bench-v0" in listing and "foot_stiffness: foot_joint=0" in listing
        tiny = set_args(tmp_path / "runs", "workers=1", "pretrain.nominal_baseline=false")
        assert main(["run", "my_robot/experiment.yaml", *tiny, "--seeds", "0"]) == 0
        run = tmp_path / "runs" / "hopper_bench"
        report = json.loads((run / "report.json").read_text())
        assert report["task"] == "Hopper" and report["target"] == "bench"
        env = gym.make("simreal/Hopper-Rand-v0")
        _, info = env.reset(seed=0)
        assert 0.0 <= info["dynamics"]["foot_stiffness/foot_joint"] <= 5.0
        assert 0.0 <= info["effects"]["backlash.width"] <= 0.05
        out = tmp_path / "eval.json"
        policy = str(run / "finetune/seed0/policy.pt")
        evaluate = ["evaluate", policy, "--task", "my_robot/hopper.yaml", "--target", "bench"]
        assert main([*evaluate, "--episodes", "1", "--json", str(out)]) == 0
        assert json.loads(out.read_text())["env"] == "simreal/Hopper-Target-Bench-v0"
    finally:
        for module in [m for m in sys.modules if m == "my_robot" or m.startswith("my_robot.")]:
            del sys.modules[module]
