"""Stage executors: the Ray backend runs two tiny seeds on a local Ray instance and gathers them, and
a sweep's trials run there as Ray tasks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny import set_args

from simreal.cli import main
from simreal.schema import ConfigError
from simreal.training.engine.executors import executor


def test_ray_backend_runs_seeds_as_tasks_and_gathers_results(tmp_path: Path) -> None:
    args = ["run", *set_args(tmp_path, "workers=2"), "--backend", "ray", "--seeds", "0,1"]
    assert main(args) == 0
    report = json.loads((tmp_path / "quickstart/report.json").read_text())
    for variant in ("finetune", "scratch", "zeroshot_randomized", "zeroshot_nominal"):
        assert report["variants"][variant]["final_return"]["n"] == 2, variant
    assert (tmp_path / "quickstart/finetune/seed1/policy.pt").exists()
    # The sweep on the same run: 2 trials at once, each seed's fine-tuning a Ray task.
    run = str(tmp_path / "quickstart")
    space = ["--space", "finetune.lr_factor=float:0.01:1.0"]
    sweep = ["sweep", run, "--device", "cpu", "--trials", "2", "--workers", "2", "--backend", "ray", *space]
    assert main(sweep) == 0
    summary = json.loads((tmp_path / "quickstart/sweep/sweep.json").read_text())
    assert [t["number"] for t in summary["trials"]] == [0, 1]
    assert all(t["value"] is not None for t in summary["trials"])
    for trial in range(2):
        for seed in (0, 1):
            assert (tmp_path / f"quickstart/sweep/trial{trial}/finetune/seed{seed}/final.json").exists()


def test_unknown_backend_and_address_without_ray_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="unknown backend 'slurm' \\(allowed: local, ray\\)"):
        executor("slurm", 2, None)
    with pytest.raises(ConfigError, match="--address: only with --backend ray"):
        executor("local", 2, "ray://head:10001")
