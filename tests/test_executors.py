"""Stage executors: the Ray backend runs two tiny seeds on a local Ray instance and gathers them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simreal.cli import main
from simreal.config_base import ConfigError
from simreal.executors import executor

TINY = [
    "pretrain.timesteps=128",
    "finetune.timesteps=128",
    "evaluation.every_steps=64",
    "evaluation.episodes=1",
    "evaluation.final_episodes=1",
    "algo.kwargs.n_steps=64",
    "algo.kwargs.batch_size=32",
    "algo.kwargs.n_epochs=1",
    "algo.net_arch=[16]",
    "workers=2",
]


def test_ray_backend_runs_seeds_as_tasks_and_gathers_results(tmp_path: Path) -> None:
    args = [
        "run",
        "--no-progress",
        "--device",
        "cpu",
        "--backend",
        "ray",
        "--seeds",
        "0,1",
        "--set",
        f"output_dir={tmp_path}",
    ]
    for item in TINY:
        args += ["--set", item]
    assert main(args) == 0
    report = json.loads((tmp_path / "quickstart/report.json").read_text())
    for variant in ("finetune", "scratch", "zeroshot_randomized", "zeroshot_nominal"):
        assert report["variants"][variant]["final_return"]["n"] == 2, variant
    assert (tmp_path / "quickstart/finetune/seed1/policy.pt").exists()


def test_unknown_backend_and_address_without_ray_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="unknown backend 'slurm' \\(allowed: local, ray\\)"):
        executor("slurm", 2, None)
    with pytest.raises(ConfigError, match="--address: only with --backend ray"):
        executor("local", 2, "ray://head:10001")
