"""The curves figure of a result document: the target budget's window, and the reference stage's curve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from simreal import stats
from simreal.analysis.results import CONFIDENCE, Gathered


def plot_curves(data: Gathered, doc: dict[str, Any], path: Path) -> None:
    """Left: every variant over the target budget (zero-shot flat), with bootstrap bands, the threshold and
    the reference return. Right (with a reference stage): the reference's whole curve and the threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    statistic = doc["statistic"]
    with_reference = "reference" in data.curves
    fig, axes = plt.subplots(1, 2 if with_reference else 1, figsize=(12 if with_reference else 7, 4.2))
    axes = np.atleast_1d(axes)
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colors = {name: palette[i % len(palette)] for i, name in enumerate(data.variants)}
    budget = doc["train_budget"] or doc["target_budget"]
    for variant, declared in data.variants.items():
        if variant not in data.curves or (variant == "reference" and with_reference):
            continue
        band = stats.curve_band(data.curves[variant], statistic, CONFIDENCE, rng=stats.seeded(None))
        style = "-" if declared.learning else "--"
        label = f"{declared.label} (n={len(data.curves[variant])})"
        axes[0].plot(band.steps, band.center, style, color=colors[variant], label=label)
        axes[0].fill_between(band.steps, band.low, band.high, color=colors[variant], alpha=0.15)
    if with_reference:
        band = stats.curve_band(data.curves["reference"], statistic, CONFIDENCE, rng=stats.seeded(None))
        inside = band.steps <= budget
        for ax, keep in ((axes[0], inside), (axes[1], np.ones_like(inside))):
            label = data.variants["reference"].label
            ax.plot(band.steps[keep], band.center[keep], color=colors["reference"], label=label)
            ax.fill_between(
                band.steps[keep], band.low[keep], band.high[keep], color=colors["reference"], alpha=0.15
            )
        axes[1].axvline(budget, color="gray", linewidth=1, label="fine-tuning budget")
        axes[1].set_title(f"reference stage: scratch for {int(band.steps[-1]):,} target steps")
    for ax in axes:
        if doc["threshold"] is not None:
            ax.axhline(doc["threshold"], color="gray", linestyle=":", linewidth=1, label="threshold")
        if doc["reference_return"] is not None:
            ax.axhline(
                doc["reference_return"],
                color="black",
                linestyle="-.",
                linewidth=0.8,
                label="reference return",
            )
        ax.set_xlabel("target environment steps")
        ax.set_ylabel(f"evaluation return on target ({statistic}, 95% CI)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_title(f"{doc['task']} -> {doc['target']} ({doc['algo']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
