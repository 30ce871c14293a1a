"""Compare the variants of a transfer experiment across seeds, gathered from one or more run directories.

Writes ``compare.json`` (the same document as a run's ``report.json``: see `results`), ``compare.md``,
``compare.png`` and TensorBoard summary series under ``summary/``. Several directories given together
are merged per variant - seeds run by separate invocations or machines count once each.

Example:
    >>> compare([Path("runs/quickstart"), Path("runs/quickstart_more_seeds")])  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simreal.analysis.report import write_results
from simreal.analysis.stats import Statistic


@dataclass(frozen=True)
class Comparison:
    """What `compare` wrote and its data."""

    data: dict[str, Any]
    markdown: str
    json_path: Path
    markdown_path: Path
    plot_path: Path


def compare(
    run_dirs: list[Path],
    out: Path | None = None,
    statistic: Statistic = "mean",
    threshold_fraction: float | None = None,
) -> Comparison:
    """Gather, compute, write compare.json/.md/.png and summary series into `out` (default: the first run)."""
    out_dir = out if out is not None else run_dirs[0]
    doc, markdown = write_results(run_dirs, out_dir, "compare", statistic, threshold_fraction)
    return Comparison(
        doc, markdown, out_dir / "compare.json", out_dir / "compare.md", out_dir / "compare.png"
    )
