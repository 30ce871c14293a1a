"""What a calibration writes: `calibration.json`, `calibrated_task.yaml`, `calibration.md`, and - inside a
run - TensorBoard's view of each identified value against its source range."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from torch.utils.tensorboard import SummaryWriter

from simreal.simulation.calibration import label
from simreal.training.engine.artifacts import atomic_write_text

SUMMARY, TASK, MARKDOWN = "calibration.json", "calibrated_task.yaml", "calibration.md"


def write_calibration(out: Path, summary: dict[str, Any], task: dict[str, Any]) -> None:
    """The three files, each written atomically (`calibration.json` last: it says the fit is done)."""
    out.mkdir(parents=True, exist_ok=True)
    header = f"# {summary['task']}, calibrated ({summary['mode']}); see calibration.json\n"
    atomic_write_text(header + yaml.safe_dump(task, sort_keys=False), out / TASK)
    atomic_write_text(to_markdown(summary), out / MARKDOWN)
    atomic_write_text(json.dumps(summary, indent=1), out / SUMMARY)


def log_to_tensorboard(out: Path, summary: dict[str, Any], step: int) -> None:
    """Each parameter's identified value with its source range and its calibrated range, at target step
    `step` (scalars `calibration/<param>/{identified,source_low,source_high,calibrated_low,calibrated_high}`
    and two margin charts per parameter on the Custom Scalars dashboard), the gap before and after, and
    `calibration.md` as text."""
    layout: dict[str, list[Any]] = {}
    with SummaryWriter(log_dir=str(out)) as writer:
        for p in summary["parameters"]:
            tag = f"calibration/{label(p)}"
            values = {
                "identified": p["value"],
                "source_low": p["range_before"][0],
                "source_high": p["range_before"][1],
                "calibrated_low": p["low"],
                "calibrated_high": p["high"],
            }
            for key, value in values.items():
                if value is not None:
                    writer.add_scalar(f"{tag}/{key}", float(value), step)
            layout[f"{label(p)} vs source range"] = [
                "Margin",
                [f"{tag}/identified", f"{tag}/source_low", f"{tag}/source_high"],
            ]
            layout[f"{label(p)} vs calibrated range"] = [
                "Margin",
                [f"{tag}/identified", f"{tag}/calibrated_low", f"{tag}/calibrated_high"],
            ]
        writer.add_scalar("calibration/dynamics_gap_before", summary["dynamics_gap_before"], step)
        writer.add_scalar("calibration/dynamics_gap_after", summary["dynamics_gap_after"], step)
        writer.add_custom_scalars({"calibration": layout})
        writer.add_text("calibration", to_markdown(summary), step)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def to_markdown(s: dict[str, Any]) -> str:
    replay = "recorded states" if s["replay"] == "states" else "reset (no state_from_obs)"
    lines = [
        f"# Calibration of {s['task']}",
        "",
        f"{s['steps']:,} recorded steps in {s['episodes']} episodes ({s['held_out_episodes']} held out for "
        f"the gap); replay from {replay}"
        f"; {s['target_steps']['total']:,} target steps taken; fit {s['fit_seconds']:.1f} s.",
        "",
        f"**Dynamics gap: {s['dynamics_gap_before']:.2f} before -> {s['dynamics_gap_after']:.2f} after** "
        f"(forward-model error on held-out target steps over the sim's own; ~1 = moves like the sim).",
        "",
        "| parameter | value | std | identified | range before | range written |",
        "|---|---|---|---|---|---|",
    ]
    for p in s["parameters"]:
        name = label(p)
        ident = "yes" if p["identified"] else ("confounded" if p["confounded_with"] else "no")
        before = "[" + ", ".join(_number(v) for v in p["range_before"]) + "]"
        lines.append(
            f"| {name} | {_number(p['value'])} | {_number(p['std'])} | {ident} | {before} | "
            f"[{_number(p['low'])}, {_number(p['high'])}] |"
        )
    for group in s["combinations"]:
        lines += ["", f"Confounded: {', '.join(group['axes'])}. What the data fix:"]
        lines += [f"- {c['combination']} = {c['value']:.4g} +- {c['std']:.2g}" for c in group["identified"]]
    notes = [f"- {p['param']}: {p['note']}" for p in s["parameters"] if p["note"] and not p["identified"]]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines) + "\n"
