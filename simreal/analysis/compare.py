"""Compare the variants of a transfer experiment across seeds, gathered from one or more run directories.

Writes ``compare.json`` (the same document as a run's ``report.json``: see `results`), ``compare.md``,
``compare.png`` and TensorBoard summary series under ``summary/``. Several directories given together
are merged per variant - seeds run by separate invocations or machines count once each - as long as
their settings agree; `--separate` puts different runs side by side instead.

Example:
    >>> compare([Path("runs/quickstart"), Path("runs/quickstart_more_seeds")])  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simreal.analysis.report import write_results
from simreal.stats import Statistic


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
    separate: bool = False,
) -> Comparison:
    """Gather, compute, write compare.json/.md/.png and summary series into `out` (default: the first run).

    Runs of one experiment pool their seeds; runs whose settings differ are refused (the error names the
    keys) unless `separate`: then each later run's variants are rows of their own (`finetune@<run>`),
    measured with the first run's yardstick."""
    out_dir = out if out is not None else run_dirs[0]
    doc, markdown = write_results(run_dirs, out_dir, "compare", statistic, threshold_fraction, separate)
    return Comparison(
        doc, markdown, out_dir / "compare.json", out_dir / "compare.md", out_dir / "compare.png"
    )
