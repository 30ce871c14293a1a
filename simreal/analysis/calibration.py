"""The report's calibration section: what each seed's `calibrate_fit` identified, the dynamics gap it
closed, and what the calibration cost on the target (`calibration/seed<N>/calibration.json`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from simreal.analysis.stage_files import per_seed
from simreal.simulation.calibration import label

STAGE, SUMMARY = "calibration", "calibration.json"


def gather(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """Every finished one under the run directories, in seed order."""
    return per_seed(run_dirs, STAGE, SUMMARY)


def summarize(per_seed: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Means over seeds (the gap, the steps, the fit's wall time) and per parameter the values found,
    how often identified, and its source range."""
    if not per_seed:
        return None
    params: dict[str, dict[str, Any]] = {}
    for cal in per_seed:
        for p in cal["parameters"]:
            row = params.setdefault(
                label(p), {"source_range": p["range_before"], "values": [], "identified": 0, "confounded": 0}
            )
            row["values"].append(p["value"])
            row["identified"] += bool(p["identified"])
            row["confounded"] += bool(p["confounded_with"])
    for row in params.values():
        row["mean"] = float(np.mean(row["values"]))
    return {
        "seeds": [c["seed"] for c in per_seed],
        "mode": per_seed[0]["mode"],
        "episodes": int(np.mean([c["episodes"] for c in per_seed])),
        "collected_steps": float(np.mean([c["collected_steps"] for c in per_seed])),
        "dynamics_gap_before": float(np.mean([c["dynamics_gap_before"] for c in per_seed])),
        "dynamics_gap_after": float(np.mean([c["dynamics_gap_after"] for c in per_seed])),
        "fit_seconds": float(np.mean([c["fit_seconds"] for c in per_seed])),
        "parameters": params,
    }


def lines(d: dict[str, Any] | None) -> list[str]:
    """The report's Markdown section."""
    if d is None:
        return []
    n = len(d["seeds"])
    out = [
        "",
        "## Calibration",
        "",
        f"The randomized policy ran {d['episodes']} episodes on the target per seed "
        f"({d['collected_steps']:,.0f} steps on average, counted in the calibrated variants' "
        "budgets); the sim was fitted to them "
        f"(`{d['mode']}` ranges), {d['fit_seconds']:.0f} s per fit. Dynamics gap (forward-model error on "
        f"held-out target steps, ~1: moves like the sim): **{d['dynamics_gap_before']:.2f} before -> "
        f"{d['dynamics_gap_after']:.2f} after** (mean of {n} seeds). Per-seed files: "
        "`calibration/seed<N>/calibration.md`; TensorBoard: `calibration/`.",
        "",
        "| parameter | source range | identified (per seed) | identified in |",
        "|---|---|---|---|",
    ]
    for name, row in d["parameters"].items():
        low, high = row["source_range"]
        values = ", ".join(f"{v:.4g}" for v in row["values"])
        how = f"{row['identified']}/{n}" + (
            f" (confounded in {row['confounded']})" if row["confounded"] else ""
        )
        out.append(f"| {name} | [{low:.4g}, {high:.4g}] | {values} | {how} |")
    return out
