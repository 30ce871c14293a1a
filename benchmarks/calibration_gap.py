"""What gap can a calibrated task reach? The dynamics gap of one recording's held-out episodes against the
original task, the calibrated task in each mode (`cover`, `center`: one fit) and the task pinned at the
target's true values (every randomized parameter and effect argument at the target's own: the gap an
exact calibration would reach). The target must state its true values (a `simreal panel`'s
`panel_task.yaml`). With `--stds 2,3,4`, the calibrated tasks' gaps at each width (standard deviations
each range holds) and how many identified values' `center` ranges hold the target's true value.

    python benchmarks/calibration_gap.py --task runs/re_seg/panel_task.yaml --target p03 \
        --log runs/re_seg/acc/p03_10/episodes.npz [--stds 2,3,4]
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

import yaml
from calibration_accuracy import true_values

from simreal.simulation.calibration import calibrate, split
from simreal.simulation.calibration.gap import dynamics_gap
from simreal.simulation.calibration.model import Sim
from simreal.simulation.calibration.recording import load_log
from simreal.simulation.calibration.replay import SEGMENTS
from simreal.simulation.calibration.task import STDS, calibrated_range, calibrated_task
from simreal.simulation.registry import register_task
from simreal.simulation.tasks import TaskSpec, load_task

PIN = 1e-9
"""Relative half-width of a pinned range (a range must have some width)."""


def pinned(raw: dict[str, Any], target_name: str, base_dir: Path) -> TaskSpec:
    """The task as the target runs: the target's physics entries as its randomization, each pinned at its
    value (a `choice` entry of the task stays a choice, of that one value), and the target's effects as
    its source effects."""
    data = copy.deepcopy(raw)
    data.pop("targets", None)
    data["name"] = f"{raw['name']}Pinned"
    target = raw["targets"][target_name]
    ranged = {(e["param"], str(e.get("names"))): e for e in data.get("randomization", {}).get("params", [])}
    params = []
    for physics in target.get("physics", []):
        entry = {k: v for k, v in physics.items() if k != "value"}
        value = float(physics["value"])
        if ranged.get((physics["param"], str(physics.get("names"))), {}).get("dist") == "choice":
            entry.update(dist="choice", values=[value])
        else:
            half = PIN * max(abs(value), 1.0)
            entry.update(dist="uniform", low=value - half, high=value + half)
        params.append(entry)
    data["randomization"] = {**data.get("randomization", {}), "params": params}
    data["source_effects"] = copy.deepcopy(target.get("effects", []))
    return load_task(data, base_dir=base_dir, where="pinned task")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True, type=Path)
    parser.add_argument("--target", required=True)
    parser.add_argument("--log", required=True, type=Path, help="the recording (episodes.npz)")
    parser.add_argument("--segments", type=int, default=SEGMENTS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stds", default=f"{STDS:g}", help="comma-separated widths, in standard deviations")
    args = parser.parse_args()
    try:
        widths = [float(w) for w in args.stds.split(",")]
    except ValueError:
        parser.error(f"--stds: comma-separated numbers, got {args.stds!r}")
    if not all(w > 0 for w in widths):
        parser.error(f"--stds: every width must be > 0, got {args.stds!r}")
    raw = yaml.safe_load(args.task.read_text())
    if args.target not in (raw.get("targets") or {}):
        parser.error(
            f"--target: {args.task} has no target {args.target!r} (it has {sorted(raw.get('targets') or {})})"
        )
    task = register_task(args.task)
    recording = load_log(args.log)
    result = calibrate(task, recording, segments=args.segments, seed=args.seed)
    held = split(recording)[1]
    truth = true_values(raw, args.target)
    measured = [  # identified continuous values the target states a truth for
        f for f in result.fits if f.identified and f.std and not f.axis.discrete and f.axis.name in truth
    ]
    sim = Sim(task)
    try:
        gaps: dict[str, float] = {"original": result.summary["dynamics_gap_before"]}
        inside: dict[str, list[int]] = {}
        for width in widths:
            tag = "" if len(widths) == 1 else f"_{width:g}"  # one width: the keys "cover" and "center"
            for mode in ("cover", "center"):
                spec = load_task(calibrated_task(task.spec, result.fits, mode, mode, width), where=mode)
                gaps[mode + tag] = dynamics_gap(sim, spec, held, args.seed)["score"]
            ranges = [(f, calibrated_range(f, "center", width)) for f in measured]
            held_truth = sum(low <= truth[f.axis.name] <= high for f, (low, high) in ranges)
            inside[f"{width:g}"] = [held_truth, len(measured)]
        gaps["pinned_at_truth"] = dynamics_gap(
            sim, pinned(raw, args.target, args.task.parent), held, args.seed
        )["score"]
    finally:
        sim.close()
    print(
        json.dumps(
            {
                "target": args.target,
                "gap": gaps,
                "truth_inside_center_range": inside,
                "fit_seconds": result.summary["fit_seconds"],
            }
        )
    )


if __name__ == "__main__":
    main()
