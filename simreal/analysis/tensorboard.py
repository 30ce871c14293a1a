"""Per-variant summary series for TensorBoard: the mean across seeds with a 95% band, at a glance.

Beside the per-seed runs (`<variant>/seed<N>/`), a run directory gets `summary/<variant>/` runs whose
tags are `summary/return` (and `_low`, `_high`: the bootstrap band) and, where the task reports success,
`summary/success_rate` (likewise), plus a custom-scalars layout with two margin charts - return and
success rate against target steps - so one chart shows fine-tune, scratch, both zero-shots and the
reference, each with its band. The directory is derived data: it is rewritten whole with the report.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

from simreal.analysis import stats
from simreal.analysis.results import CONFIDENCE, Gathered

LAYOUT = {
    "transfer": {
        "return on the target (mean across seeds, 95% band)": [
            "Margin",
            ["summary/return", "summary/return_low", "summary/return_high"],
        ],
        "success rate on the target (mean across seeds, 95% band)": [
            "Margin",
            ["summary/success_rate", "summary/success_rate_low", "summary/success_rate_high"],
        ],
    }
}


def summary_series(curves: list[Any], statistic: stats.Statistic) -> list[tuple[int, float, float, float]]:
    """(step, center, low, high) per evaluation step of one variant."""
    band = stats.curve_band(curves, statistic, CONFIDENCE, rng=stats.seeded(None))
    return [(int(s), float(c), float(lo), float(hi)) for s, c, lo, hi in zip(*band, strict=True)]


def write_summary(root: Path, data: Gathered, doc: dict[str, Any]) -> None:
    """Rewrite `root` with one TensorBoard run per variant and the custom-scalars layout."""
    if root.exists():
        shutil.rmtree(root)
    statistic = doc["statistic"]
    for variant, curves in data.curves.items():
        with SummaryWriter(log_dir=str(root / variant)) as writer:
            for tag, per_seed in (("return", curves), ("success_rate", data.success.get(variant))):
                if not per_seed:
                    continue
                for step, center, low, high in summary_series(per_seed, statistic):
                    writer.add_scalar(f"summary/{tag}", center, step)
                    writer.add_scalar(f"summary/{tag}_low", low, step)
                    writer.add_scalar(f"summary/{tag}_high", high, step)
    with SummaryWriter(log_dir=str(root / "layout")) as writer:
        writer.add_custom_scalars(LAYOUT)
