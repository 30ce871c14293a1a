"""Same config and seeds give the identical report, with 2 workers twice and with 1 worker.

Results used to depend on where a stage ran: the main process trained with 2 torch threads, worker
processes with 1, and float reductions differ with the thread count. Every stage now runs with
`torch_threads` (default 1) wherever it lands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from tiny import set_args

from simreal.cli import main

PATHS = ("run_dirs", "seeds", "sources")


def _numbers(doc: Any) -> Any:
    """The report without the fields that name directories (they differ between the two runs)."""
    if isinstance(doc, dict):
        return {k: _numbers(v) for k, v in doc.items() if k not in PATHS}
    if isinstance(doc, list):
        return [_numbers(v) for v in doc]
    return doc


def _weights(run: Path) -> dict[str, Any]:
    return torch.load(run / "pretrain_nominal" / "seed1" / "policy.pt", weights_only=True)["states"]["policy"]


def test_identical_reports_across_runs_and_worker_counts(tmp_path: Path) -> None:
    reports, weights = [], []
    big_enough = ["pretrain.timesteps=1024", "algo.net_arch=[64, 64]"]  # threads change 64-wide matmuls
    for name, workers in (("a", 2), ("b", 2), ("c", 1)):
        args = set_args(tmp_path / name, f"workers={workers}", *big_enough)
        assert main(["run", *args, "--seeds", "0,1"]) == 0
        run = tmp_path / name / "quickstart"
        reports.append(json.loads((run / "report.json").read_text()))
        weights.append(_weights(run))
    assert _numbers(reports[0]) == _numbers(reports[1]), "two runs with 2 workers differ"
    assert _numbers(reports[0]) == _numbers(reports[2]), "1 worker and 2 workers differ"
    for other in weights[1:]:
        assert all(torch.equal(weights[0][k], other[k]) for k in weights[0]), "weights differ bit for bit"
    assert reports[0]["variants"]["zeroshot_nominal"]["per_seed_final_return"]  # something was compared
