"""Per-variant summary series for TensorBoard: the mean across seeds with a 95% band, at a glance.

Beside the per-seed runs (`<variant>/seed<N>/`), a run directory gets `summary/<variant>/` runs whose
tags are `summary/return` (and `_low`, `_high`: the bootstrap band) over the fine-tuning budget and,
where the task reports success, `summary/success_rate` (likewise), plus a custom-scalars layout of
margin charts, so one chart shows fine-tune, scratch, both zero-shots and the reference against target
steps, each with its band (and another the reference stage's whole curve). The directory is derived
data: it is rewritten whole with the report.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

from simreal import stats
from simreal.analysis.results import CONFIDENCE, Gathered


def _margin(tag: str) -> list[Any]:
    return ["Margin", [f"summary/{tag}", f"summary/{tag}_low", f"summary/{tag}_high"]]


def layout(with_success: bool, with_reference: bool) -> dict[str, dict[str, list[Any]]]:
    """The custom-scalars layout: return (and success rate) over the target budget for every variant,
    and the reference stage's whole curve, each line with its band."""
    charts = {"return on the target (mean across seeds, 95% band)": _margin("return")}
    if with_success:
        charts["success rate on the target (mean across seeds, 95% band)"] = _margin("success_rate")
    if with_reference:
        charts["the reference stage: scratch, full length"] = _margin("reference_return")
    return {"transfer": charts}


def summary_series(curves: list[Any], statistic: stats.Statistic) -> list[tuple[int, float, float, float]]:
    """(step, center, low, high) per evaluation step of one variant."""
    band = stats.curve_band(curves, statistic, CONFIDENCE, rng=stats.seeded(None))
    return [(int(s), float(c), float(lo), float(hi)) for s, c, lo, hi in zip(*band, strict=True)]


def write_summary(root: Path, data: Gathered, doc: dict[str, Any]) -> None:
    """Rewrite `root` with one TensorBoard run per variant and the custom-scalars layout.

    Every variant is drawn over the fine-tuning budget (the reference too, cut there), so one chart
    compares them at the same target steps; the reference's whole curve has a chart of its own."""
    if root.exists():
        shutil.rmtree(root)
    statistic, budget = doc["statistic"], (doc["train_budget"] or doc["target_budget"])
    for variant, curves in data.curves.items():
        with SummaryWriter(log_dir=str(root / variant)) as writer:
            series = [("return", curves), ("success_rate", data.success.get(variant))]
            if variant == "reference":
                series.append(("reference_return", curves))
            for tag, per_seed in series:
                if not per_seed:
                    continue
                for step, center, low, high in summary_series(per_seed, statistic):
                    if tag != "reference_return" and step > budget:
                        continue
                    writer.add_scalar(f"summary/{tag}", center, step)
                    writer.add_scalar(f"summary/{tag}_low", low, step)
                    writer.add_scalar(f"summary/{tag}_high", high, step)
    with SummaryWriter(log_dir=str(root / "layout")) as writer:
        writer.add_custom_scalars(layout(bool(data.success), "reference" in data.curves))
