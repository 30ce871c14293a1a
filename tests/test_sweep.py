"""Fine-tuning sweep: trials fine-tune the pretrained policies; best setting and sensitivity reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny import set_args

from simreal.cli import main
from simreal.config_base import ConfigError
from simreal.sweep import parse_space


def test_sweep_over_learning_rate_and_frozen_layers(tmp_path: Path) -> None:
    extra = ("evaluation.final_episodes=2", "workers=1", "scratch=false", "pretrain.nominal_baseline=false")
    args = ["run", *set_args(tmp_path, *extra), "--seeds", "0"]
    assert main(args) == 0
    run = tmp_path / "quickstart"
    assert (
        main(
            [
                "sweep",
                str(run),
                "--device",
                "cpu",
                "--trials",
                "4",
                "--space",
                "finetune.learning_rate=log:1e-5:1e-2",
                "--space",
                "finetune.freeze_layers=int:0:1",
            ]
        )
        == 0
    )
    summary = json.loads((run / "sweep/sweep.json").read_text())
    assert len(summary["trials"]) == 4
    for trial in summary["trials"]:
        assert 1e-5 <= trial["params"]["finetune.learning_rate"] <= 1e-2
        assert trial["params"]["finetune.freeze_layers"] in (0, 1)
        assert (run / f"sweep/trial{trial['number']}/finetune/seed0/final.json").exists()
    assert summary["best_value"] == max(t["value"] for t in summary["trials"])
    assert (run / "sweep/sweep.md").read_text().startswith("# Fine-tuning sweep")
    # values outside the schema fail before any trial trains
    assert main(["sweep", str(run), "--trials", "1", "--space", "finetune.freeze_layers=int:0:-1"]) == 2
    assert (
        main(["sweep", str(run), "--trials", "1", "--space", "finetune.lr_schedule=choice:constant,wavy"])
        == 2
    )


def test_space_syntax_errors_are_one_line() -> None:
    with pytest.raises(ConfigError, match="expected key.path=KIND:ARGS"):
        parse_space(["finetune.learning_rate=uniform:1:2"])
    with pytest.raises(ConfigError, match="bad bounds for log"):
        parse_space(["finetune.learning_rate=log:0:1"])
