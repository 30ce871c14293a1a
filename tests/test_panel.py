"""`simreal panel`: random targets drawn from a task, reproducible from the seed, written as an ordinary
task file; the recipe runs on each and the panel says how often fine-tuning wins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tiny import TINY

from simreal.cli import main
from simreal.schema import ConfigError, config_dir
from simreal.simulation.panel import draw_panel
from simreal.simulation.tasks import load_task

RECIPE = [x for x in TINY if not x.startswith("reference.")]


def test_the_same_seed_draws_the_same_panel_and_values_respect_their_kind() -> None:
    task = load_task("inverted_pendulum")
    a, b = draw_panel(task, 12, 7, 3.0), draw_panel(task, 12, 7, 3.0)
    assert a == b and draw_panel(task, 12, 8, 3.0) != a
    shifts = [s for _, targets in a.values() for s in targets]
    assert {s.where for s in shifts} == {"inside", "edge", "beyond"}
    for s in shifts:
        if s.where == "inside":
            assert s.low <= s.value <= s.high
        if s.where == "beyond":
            assert not s.low <= s.value <= s.high and 0 < s.outside <= 1
    delays = [s.value for s in shifts if s.axis == "action_delay.steps"]
    assert all(float(d).is_integer() and d >= 0 for d in delays)
    never_beyond = draw_panel(task, 12, 7, 1.0)
    assert all(s.where != "beyond" for _, targets in never_beyond.values() for s in targets)


def test_a_panel_runs_the_recipe_on_every_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "panel"
    sets = [arg for item in [*RECIPE, "seeds=[0]", "device=cpu"] for arg in ("--set", item)]
    args = ["panel", "inverted_pendulum", "--targets", "2", "--seed", "3", "--beyond", "2", "--out", str(out)]
    assert main([*args, *sets]) == 0
    doc = json.loads((out / "panel.json").read_text())
    assert doc["finished"] == 2 and doc["caveat"] and "too few" in (out / "panel.md").read_text()
    assert set(doc["win_rates"]) == {"finetune_beats_scratch", "finetune_beats_zeroshot"}
    assert {t["name"] for t in doc["targets"]} == {"p0", "p1"} and (out / "panel.png").stat().st_size > 1000
    for t in doc["targets"]:
        assert set(t["returns"]) == {"finetune", "scratch", "zeroshot_randomized"}
    # pretraining ran once: the second target's run starts from the first's policies
    assert (out / "runs/p1/pretrain_randomized").is_symlink()
    # the targets are an ordinary task file
    assert main(["envs", "--task", str(out / "panel_task.yaml")]) == 0
    listing = capsys.readouterr().out
    assert "simreal/InvertedPendulumPanel3-Target-P0-v0" in listing and "panel target 1 of seed 3" in listing
    task = yaml.safe_load((out / "panel_task.yaml").read_text())
    assert set(task["targets"]) == {"p0", "p1"}


def test_a_panel_reuses_what_fine_tuning_does_not_touch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sets = [arg for item in [*RECIPE, "seeds=[0]", "device=cpu"] for arg in ("--set", item)]
    args = ["panel", "inverted_pendulum", "--targets", "2", "--seed", "3"]
    first, second = tmp_path / "a", tmp_path / "b"
    assert main([*args, "--out", str(first), *sets]) == 0
    # another recipe for the scratch stage: refused in one line, nothing written
    budget = ["--set", "finetune.timesteps=512"]
    assert main([*args, "--out", str(second), "--reuse", str(first), *sets, *budget]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "its recipe differs in finetune.timesteps" in err and not second.exists()
    other = ["--set", "finetune.lr_factor=0.5", "--set", "evaluation.episodes=3"]  # what selection sees
    assert main([*args, "--out", str(second), "--reuse", str(first), *sets, *other]) == 0
    a, b = (json.loads((d / "panel.json").read_text()) for d in (first, second))
    for ta, tb in zip(a["targets"], b["targets"], strict=True):
        for stage in ("zeroshot_randomized", "scratch", "pretrain_randomized"):
            assert (second / "runs" / tb["name"] / stage).is_symlink()
            if stage != "pretrain_randomized":
                assert ta["returns"][stage] == tb["returns"][stage]
        assert not (second / "runs" / tb["name"] / "finetune").is_symlink()
    assert (second / "runs/p0/finetune/seed0/final.json").is_file()


def test_evaluations_counted_in_the_budget_are_part_of_what_reuse_must_match() -> None:
    from simreal.panel import _first_difference, _lent

    def doc(episodes: int, counted: bool) -> dict[str, object]:
        return {
            "finetune": {"timesteps": 512, "lr_factor": 0.1},
            "evaluation": {"episodes": episodes, "every_steps": 256, "count_in_budget": counted},
        }

    assert _first_difference(_lent(doc(5, False)), _lent(doc(20, False))) is None
    assert _first_difference(_lent(doc(5, True)), _lent(doc(20, True))) == "evaluation.episodes"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--beyond", "0.5"], "--beyond: a factor >= 1"),
        (["--targets", "0"], "--targets: must be >= 1"),
    ],
)
def test_bad_panels_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    args = ["panel", "inverted_pendulum", "--targets", "2", "--out", str(tmp_path / "p"), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err and not (tmp_path / "p").exists()


def test_a_panel_on_a_robot_is_refused(tmp_path: Path) -> None:
    from simreal.panel import recipe, run_panel

    task = yaml.safe_load((config_dir() / "tasks/inverted_pendulum.yaml").read_text())
    task["targets"] = {"robot": {"exclusive": True}}
    (tmp_path / "robot.yaml").write_text(yaml.safe_dump(task))
    with pytest.raises(ConfigError, match="exclusive \\(hardware\\) - a panel draws simulated targets"):
        run_panel(recipe(str(tmp_path / "robot.yaml"), []), 2, 0, 2.0, tmp_path / "p")
    assert not (tmp_path / "p").exists()
