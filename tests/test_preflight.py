"""Preflight: every env and the model are built before the run directory exists; bad values are one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from tiny import TINY, set_args

from simreal.cli import main
from simreal.config import load_config
from simreal.schema import ConfigError
from simreal.training.engine.pipeline import prepare_run_dir
from simreal.training.engine.preflight import preflight

CPU = torch.device("cpu")
KEYS = [
    "algo.kwargs.n_steps",
    "algo.kwargs.batch_size",
    "algo.kwargs.n_epochs",
    "algo.kwargs.gamma",
    "algo.kwargs.gae_lambda",
    "algo.kwargs.clip_range",
    "algo.net_arch",
    "algo.activation",
    "algo.n_envs",
    "finetune.timesteps",
    "finetune.lr_factor",
    "evaluation.every_steps",
    "observation.action_history",
]
VALUES: list[Any] = ["abc", {}, {"a": 1}, 0, -3, 1.5, None, [1, 2], True, 7]


def _mutations(n: int) -> list[tuple[str, Any]]:
    rng = np.random.default_rng(0)
    return [(KEYS[rng.integers(len(KEYS))], VALUES[rng.integers(len(VALUES))]) for _ in range(n)]


@pytest.mark.parametrize(("key", "value"), _mutations(40))
def test_mutated_configs_are_accepted_or_a_one_line_error_naming_the_key(key: str, value: Any) -> None:

    overrides = [
        *TINY,
        f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}",
    ]
    try:
        cfg = load_config(None, overrides)
        preflight(cfg, CPU)
    except ConfigError as err:
        text = str(err)
        assert "\n" not in text
        assert key.split(".")[-1] in text or key.rsplit(".", 1)[0] in text, text
    # anything else (a traceback from SB3 or torch) fails the test


def test_combination_refused_by_sb3_is_named_by_the_dry_run() -> None:
    cfg = load_config(None, [*TINY, "algo.kwargs.n_steps=1", "algo.kwargs.batch_size=1"])
    with pytest.raises(ConfigError, match=r"algo\.kwargs\.(n_steps|batch_size): 1 rejected by PPO") as err:
        preflight(cfg, CPU)
    assert "\n" not in str(err.value)


def test_preflight_builds_nothing_on_disk(tmp_path: Path) -> None:
    cfg = load_config(None, [*TINY, f"output_dir={tmp_path}"])
    preflight(cfg, CPU)
    assert list(tmp_path.iterdir()) == []


def test_an_attempt_that_failed_before_any_stage_does_not_block_the_same_command(tmp_path: Path) -> None:
    cfg = load_config(None, [*TINY, f"output_dir={tmp_path}"])
    run_dir = prepare_run_dir(cfg, resume=False)  # as if the first stage had crashed at once
    assert prepare_run_dir(cfg, resume=False) == run_dir
    (run_dir / "finetune" / "seed0").mkdir(parents=True)
    (run_dir / "finetune" / "seed0" / "events").write_text("x")
    with pytest.raises(FileExistsError, match="use --resume"):
        prepare_run_dir(cfg, resume=False)


def test_tampered_artifact_is_refused_in_one_line_without_running_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    class Payload:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    evil = tmp_path / "policy.pt"
    torch.save({"format": "simreal-v1", "kind": "policy", "x": Payload()}, evil)
    args = ["evaluate", str(evil), "--env", "simreal/InvertedPendulum-v0", "--episodes", "1"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "not a simreal artifact, or tampered with" in err and "system" in err
    assert not (tmp_path / "ran").exists()


def test_bad_kwargs_never_reach_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", *set_args(tmp_path, "algo.kwargs.n_epochs=0")]) == 2
    assert "algo.kwargs.n_epochs: must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "quickstart").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["evaluation.success_return=0"],
            "evaluation.success_return: 0 is already reached by an untrained policy",
        ),
        (["reference.timesteps=64"], "reference.timesteps: 64 is below the fine-tuning budget 128"),
        (
            ["evaluation.threshold_fraction=0"],
            "evaluation.threshold_fraction: Input should be greater than 0",
        ),
        (
            ["evaluation.threshold_fraction=1.2"],
            "evaluation.threshold_fraction: Input should be less than or equal",
        ),
    ],
)
def test_bad_yardstick_settings_are_one_line_errors_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], overrides: list[str], message: str
) -> None:
    assert main(["run", *set_args(tmp_path, *overrides)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err, err
    assert not (tmp_path / "quickstart").exists()


def test_reference_off_and_success_return_on(tmp_path: Path) -> None:
    import json

    assert (
        main(["run", *set_args(tmp_path, "reference=false", "evaluation.success_return=900"), "--seeds", "0"])
        == 0
    )
    report = json.loads((tmp_path / "quickstart" / "report.json").read_text())
    assert report["reference"]["kind"] == "success_return" and report["reference_return"] == 900
    assert "reference" not in report["variants"] and not (tmp_path / "references").exists()
    assert report["sample_efficiency_ratio"]["scratch_curves"] == "scratch"


def test_a_pooling_grid_larger_than_the_feature_map_is_one_line() -> None:
    """Stage 5 of EfficientNet-Lite0 gives a 4x4 map for 64x64 frames: a 6x6 grid would only repeat
    cells (adaptive pooling upsamples without a word); 4 is accepted."""
    from simreal.config import config_dir

    pixels = config_dir() / "inverted_pendulum_pixels.yaml"
    with pytest.raises(ConfigError, match=r"perception.pool: a 6x6 grid on the 4x4 feature map") as err:
        preflight(load_config(pixels, ["perception.tap=stage5", "perception.pool=6"]), CPU)
    assert "\n" not in str(err.value)
    preflight(load_config(pixels, ["perception.tap=stage5", "perception.pool=4"]), CPU)
