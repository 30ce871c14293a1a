"""How close does `simreal calibrate` get to a target's true physics and effects, and how fast?

For a task file whose targets state their true values (a `simreal panel`'s `panel_task.yaml`, or any
task with fixed target physics) and a policy that acts on it, each named target is calibrated live with
`--episodes N` (for each N given); the table compares every axis's identified value (and std) with the
target's true one, each confounded group's identified combination with the true combination, and gives
the dynamics gap before and after and the fit's wall time and replay evaluations. With several
`--segments` values, the first calibrates live and the others refit the same recorded episodes
(`--from-log`): the same data, replayed over fewer or more segments per candidate.

    python benchmarks/calibration_accuracy.py --task runs/quickstart_panel_seed0/panel_task.yaml \
        --policy runs/quickstart_panel_seed0/runs/p00/pretrain_randomized/seed0/policy.pt \
        --targets p00,p03,p09 --episodes 10,30 --segments 192,48
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path
from typing import Any

import yaml

from simreal.cli import main as simreal_main
from simreal.simulation.calibration.replay import SEGMENTS


def true_values(task: dict[str, Any], target: str) -> dict[str, float]:
    """The target's true value on every axis the task randomizes (the entry's own middle where the
    target leaves it alone: nominal for a scale factor, 0 for an offset)."""
    spec = task["targets"][target]
    out: dict[str, float] = {}
    for entry in task["randomization"]["params"]:
        name = entry["param"] + (f"/{','.join(entry['names'])}" if entry.get("names") else "")
        mode = entry.get("mode", "scale")
        out[name] = 1.0 if mode == "scale" else 0.0
        for p in spec.get("physics", []):
            if p["param"] == entry["param"] and p.get("names") == entry.get("names"):
                out[name] = float(p["value"])
    for effect in task.get("source_effects", []):
        for key in effect:
            if key == "type":
                continue
            out[f"{effect['type']}.{key}"] = 0.0
            for e in spec.get("effects", []):
                if e["type"] == effect["type"] and key in e:
                    out[f"{effect['type']}.{key}"] = float(e[key])
    return out


def _combination_truth(expr: str, truth: dict[str, float]) -> float | None:
    """The true value of a reported combination: `a / b^p`, `a / (b^p x c^q ...)` or
    `[ln ]a - p x [ln ]b - q x [ln ]c ...` (None where an axis has no true value)."""

    def value(term: str) -> float | None:
        log, name = term.startswith("ln "), term.removeprefix("ln ")
        if name not in truth:
            return None
        return math.log(truth[name]) if log else truth[name]

    ratio = re.fullmatch(r"(.+?) / \((.+)\)", expr) or re.fullmatch(r"(.+?) / (.+\^-?[\d.]+)", expr)
    if ratio:
        if ratio.group(1) not in truth:
            return None
        out = truth[ratio.group(1)]
        for factor in ratio.group(2).split(" x "):
            name, power = factor.rsplit("^", 1)
            if name not in truth:
                return None
            out /= truth[name] ** float(power)
        return out
    terms = re.split(r" - (?=-?[\d.]+ x )", expr)
    first = value(terms[0])
    if first is None or len(terms) < 2:
        return None
    out = first
    for term in terms[1:]:
        power, rest = term.split(" x ", 1)
        v = value(rest)
        if v is None:
            return None
        out -= float(power) * v
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--policy", required=True)
    parser.add_argument("--targets", required=True)
    parser.add_argument("--episodes", default="10")
    parser.add_argument("--excite", default="0.0")
    parser.add_argument(
        "--segments",
        default=str(SEGMENTS),
        help="comma-separated; the first calibrates live (default: calibrate's)",
    )
    parser.add_argument("--out", default="runs/calibration_accuracy")
    args = parser.parse_args()
    task = yaml.safe_load(Path(args.task).read_text())
    out = Path(args.out)
    rows = []
    for target in args.targets.split(","):
        truth = true_values(task, target)
        counts = args.segments.split(",")
        for episodes, segments in [(e, g) for e in args.episodes.split(",") for g in counts]:
            live = out / f"{target}_{episodes}"
            first = segments == counts[0]
            where = live if first else out / f"{target}_{episodes}_s{segments}"
            if not (where / "calibration.json").is_file():
                if first:
                    cli = ["calibrate", args.policy, "--task", args.task, "--target", target]
                    cli += ["--episodes", episodes, "--excite", args.excite]
                else:  # the live calibration's recorded episodes, refitted
                    cli = ["calibrate", "--task", args.task, "--from-log", str(live / "episodes.npz")]
                cli += ["--segments", segments, "--device", "cpu", "--out", str(where)]
                if simreal_main(cli) != 0:
                    raise SystemExit(f"calibration of {target} failed")
            s = json.loads((where / "calibration.json").read_text())
            axes = []
            for p in s["parameters"]:
                name = p["param"] + (f"/{','.join(p['names'])}" if p["names"] else "")
                state = "yes" if p["identified"] else ("confounded" if p["confounded_with"] else "no")
                axes.append(
                    {
                        "axis": name,
                        "true": truth.get(name),
                        "value": p["value"],
                        "std": p["std"],
                        "identified": state,
                    }
                )
            combos = [
                {**c, "true": _combination_truth(c["combination"], truth)}
                for g in s["combinations"]
                for c in g["identified"]
            ]
            rows.append(
                {
                    "target": target,
                    "episodes": int(episodes),
                    "segments": int(segments),
                    "evaluations": s.get("evaluations"),
                    "steps": s["steps"],
                    "gap": [s["dynamics_gap_before"], s["dynamics_gap_after"]],
                    "fit_seconds": s["fit_seconds"],
                    "axes": axes,
                    "combinations": combos,
                }
            )
    (out / "accuracy.json").write_text(json.dumps(rows, indent=1))
    for r in rows:
        print(
            f"\n{r['target']}, {r['episodes']} episodes ({r['steps']} steps), {r['segments']} segments: gap "
            f"{r['gap'][0]:.2f} -> {r['gap'][1]:.2f}, fit {r['fit_seconds']:.0f} s, "
            f"{r['evaluations']} evaluations"
        )
        print("| axis | true | identified | std | status |\n|---|---|---|---|---|")
        for a in r["axes"]:
            std = "-" if a["std"] is None else f"{a['std']:.3g}"
            print(f"| {a['axis']} | {a['true']:.4g} | {a['value']:.4g} | {std} | {a['identified']} |")
        for c in r["combinations"]:
            true = "-" if c["true"] is None else f"{c['true']:.4g}"
            print(f"| {c['combination']} | {true} | {c['value']:.4g} | {c['std']:.3g} | combination |")


if __name__ == "__main__":
    main()
