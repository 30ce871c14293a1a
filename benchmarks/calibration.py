"""Calibrate, then pretrain on what was measured: does it close the gap on a target outside the ranges?

For one experiment config (default: the pendulum extrapolation target) and each seed:

1. `simreal run` the config as shipped (no reference stage): zero-shot randomized, fine-tune, scratch
   on the target - the "before";
2. `simreal calibrate` that seed's randomized policy on the target (`--episodes`, `--excite`), every
   step counted; `--mode center` and `--mode cover` from the same recorded episodes (the second from
   the log file the first wrote);
3. per mode, `simreal run` the config again with the calibrated task: its zero-shot randomized row is
   `zeroshot_calibrated`, its fine-tune row `finetune_calibrated` (calibration's target steps added to
   its budget count in the table).

Writes `calibration_benchmark.json` under `--out` and prints a markdown table: identified values against
the target's true ones, the dynamics gap before and after, calibration's wall time, and the returns.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _simreal(args: list[str]) -> None:
    """One simreal command in its own process (each calibrated task registers its own ids)."""
    code = subprocess.call([sys.executable, "-m", "simreal.cli", *args])
    if code != 0:
        raise SystemExit(f"simreal {' '.join(args)} failed ({code})")


def _run(config: Path, out: Path, name: str, seed: int, overrides: list[str]) -> dict[str, Any]:
    report = out / name / "report.json"
    if not report.is_file():
        args = ["run", str(config), "--no-progress", "--seeds", str(seed), "--set", f"output_dir={out}"]
        for item in [f"experiment={name}", "reference=false", "workers=1", *overrides]:
            args += ["--set", item]
        _simreal(args)
    variants: dict[str, Any] = json.loads(report.read_text())["variants"]
    return {k: v["final_return"]["mean"] for k, v in variants.items() if v.get("final_return")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "inverted_pendulum_extrapolate.yaml"))
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--excite", type=float, default=0.0)
    parser.add_argument("--out", default="runs/calibration_benchmark")
    args = parser.parse_args()
    config, out = Path(args.config).resolve(), Path(args.out).resolve()
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        before = _run(config, out, f"before_seed{seed}", seed, [])
        exp = yaml.safe_load((out / f"before_seed{seed}" / "config.yaml").read_text())
        policy = out / f"before_seed{seed}" / "pretrain_randomized" / f"seed{seed}" / "policy.pt"
        task, target = exp["task"], exp["target"]
        row: dict[str, Any] = {"seed": seed, "before": before}
        for mode in ("center", "cover"):
            cal = out / f"calibration_seed{seed}_{mode}"
            if not (cal / "calibration.json").is_file():
                common = ["--mode", mode, "--seed", str(seed), "--out", str(cal), "--device", "cpu"]
                task_file = str(out / "task.yaml")
                Path(task_file).write_text(yaml.safe_dump(task, sort_keys=False))
                if mode == "center":
                    live = [
                        "--target",
                        target,
                        "--episodes",
                        str(args.episodes),
                        "--excite",
                        str(args.excite),
                    ]
                    _simreal(["calibrate", str(policy), "--task", task_file, *live, *common])
                else:
                    log = out / f"calibration_seed{seed}_center" / "episodes.npz"
                    _simreal(["calibrate", "--task", task_file, "--from-log", str(log), *common])
            summary = json.loads((cal / "calibration.json").read_text())
            after = _run(
                config,
                out,
                f"calibrated_seed{seed}_{mode}",
                seed,
                [f"task={cal / 'calibrated_task.yaml'}", "scratch=false", "pretrain.nominal_baseline=false"],
            )
            row[mode] = {
                "zeroshot_calibrated": after.get("zeroshot_randomized"),
                "finetune_calibrated": after.get("finetune"),
                "gap_before": summary["dynamics_gap_before"],
                "gap_after": summary["dynamics_gap_after"],
                "fit_seconds": summary["fit_seconds"],
                "calibration_target_steps": json.loads(
                    (out / f"calibration_seed{seed}_center" / "calibration.json").read_text()
                )["target_steps"]["total"],
                "parameters": summary["parameters"],
                "combinations": summary["combinations"],
            }
        rows.append(row)
        (out / "calibration_benchmark.json").write_text(json.dumps(rows, indent=1))
    _print(rows)


def _mean(values: list[float]) -> str:
    return f"{statistics.mean(values):.1f}" if values else "-"


def _print(rows: list[dict[str, Any]]) -> None:
    print(
        "| seed | zero-shot randomized | fine-tune | scratch | mode | gap before -> after | fit s | "
        "zeroshot_calibrated | finetune_calibrated |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        b = r["before"]
        for mode in ("center", "cover"):
            m = r[mode]
            print(
                f"| {r['seed']} | {b.get('zeroshot_randomized', 0):.1f} | {b.get('finetune', 0):.1f} | "
                f"{b.get('scratch', 0):.1f} | {mode} | {m['gap_before']:.2f} -> {m['gap_after']:.2f} | "
                f"{m['fit_seconds']:.0f} | {m['zeroshot_calibrated']:.1f} | {m['finetune_calibrated']:.1f} |"
            )
    for mode in ("center", "cover"):
        print(
            f"{mode}: mean zeroshot_calibrated {_mean([r[mode]['zeroshot_calibrated'] for r in rows])}, "
            f"finetune_calibrated {_mean([r[mode]['finetune_calibrated'] for r in rows])}; before: zero-shot "
            f"{_mean([r['before']['zeroshot_randomized'] for r in rows])}, fine-tune "
            f"{_mean([r['before']['finetune'] for r in rows])}, "
            f"scratch {_mean([r['before']['scratch'] for r in rows])}"
        )


if __name__ == "__main__":
    main()
