"""Stage executors: the Ray backend runs two tiny seeds on a local Ray instance and gathers them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny import set_args

from simreal.cli import main
from simreal.config_base import ConfigError
from simreal.executors import executor


def test_ray_backend_runs_seeds_as_tasks_and_gathers_results(tmp_path: Path) -> None:
    args = ["run", *set_args(tmp_path, "workers=2"), "--backend", "ray", "--seeds", "0,1"]
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
