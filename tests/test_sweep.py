"""Fine-tuning sweep: trials fine-tune the pretrained policies; best setting and sensitivity reported."""

from __future__ import annotations

import json
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import optuna
import pytest
from tiny import set_args

from simreal.cli import main
from simreal.schema import ConfigError
from simreal.training.methods.finetune.sweep import _parallel_trials, parse_space


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
    # 4 trials on 1 seed: the sweep says its importances and values rest on too little
    assert any("4 trials: too few" in c for c in summary["caveats"])
    assert any("1 seed(s)" in c for c in summary["caveats"])
    assert "Caution: importances from 4 trials" in (run / "sweep/sweep.md").read_text()
    # a second sweep never overwrites the first: a new --name, or a one-line error
    again = ["sweep", str(run), "--trials", "1", "--space", "finetune.freeze_layers=int:0:1"]
    assert main(again) == 2
    assert main([*again, "--name", "sweep2", "--device", "cpu"]) == 0
    assert json.loads((run / "sweep/sweep.json").read_text()) == summary
    assert len(json.loads((run / "sweep2/sweep.json").read_text())["trials"]) == 1
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


def test_parallel_trials_keep_n_in_flight_and_tell_each_trial_its_seed_mean() -> None:
    """The scheduler alone, with instant jobs: never more than `in_flight` trials open (asked, not yet
    told) when a job is submitted, a trial told only after all its seeds, with the mean of their returns."""
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    open_counts: list[int] = []

    def submit(fn: Any, x: float, source: Path, seed: int) -> Future[float]:
        open_counts.append(sum(t.state == optuna.trial.TrialState.RUNNING for t in study.trials))
        future: Future[float] = Future()
        future.set_result(x + seed)  # the "final return" of seed s is x + s
        return future

    sources = {0: Path("a"), 1: Path("b")}
    _parallel_trials(study, 5, 2, lambda trial: trial.suggest_float("x", 0.0, 1.0), sources, submit)
    assert max(open_counts) == 2 and len(open_counts) == 10  # 5 trials x 2 seeds, 2 trials at a time
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 5
    for trial in study.trials:
        assert trial.value == pytest.approx(trial.params["x"] + 0.5)  # the mean of x + 0 and x + 1
