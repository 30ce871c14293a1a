"""Multi-task pretraining on a family of robots, transferred to one it never saw: does it pay?

For one experiment with `pretrain.tasks` (default: configs/reacher_multitask.yaml) and each budget
factor (1x and 3x `finetune.timesteps`):

- the experiment itself: `finetune_multitask` (pretrained on the family, the held-out arm never seen),
  `finetune` (pretrained on the held-out arm's own randomized sim: what a user who could simulate the
  target robot would do), `scratch`, and the reference stage (the yardstick);
- the single-task source: the same file with `pretrain.tasks: [<nearest>]` and `multitask.conditioning:
  none` - one task of the family, the same simulation steps - whose `finetune_multitask` row is the
  single-task transfer the multi-task one is compared with.

Runs at 3x reuse the 1x runs' pretraining (linked stage directories; the reference stage is cached).
Writes `multitask_benchmark.json` under `--out` and prints a markdown table: final return and target
steps to the threshold per variant and budget.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ("pretrain_randomized", "pretrain_multitask")


def _run(
    config: Path, out: Path, name: str, seeds: str, overrides: list[str], link_from: Path | None
) -> dict[str, Any]:
    run_dir = out / name
    report = run_dir / "report.json"
    if not report.is_file():
        for stage in SHARED if link_from is not None else ():
            if (link_from / stage).is_dir() and not (run_dir / stage).exists():
                run_dir.mkdir(parents=True, exist_ok=True)
                (run_dir / stage).symlink_to(link_from / stage, target_is_directory=True)
        args = ["run", str(config), "--no-progress", "--seeds", seeds, "--set", f"output_dir={out}"]
        for item in [f"experiment={name}", *overrides]:
            args += ["--set", item]
        code = subprocess.call([sys.executable, "-m", "simreal.cli", *args])
        if code != 0:
            raise SystemExit(f"simreal {' '.join(args)} failed ({code})")
    doc: dict[str, Any] = json.loads(report.read_text())
    return doc


def _row(doc: dict[str, Any], variant: str) -> dict[str, Any] | None:
    row = doc["variants"].get(variant)
    if row is None:
        return None
    return {
        "final_return": row["final_return"]["mean"],
        "per_seed": row["per_seed_final_return"],
        "steps_to_threshold": row["steps_to_threshold"],
        "fraction_of_reference": row["fraction_of_reference"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "reacher_multitask.yaml"))
    parser.add_argument(
        "--nearest", default="reacher_long", help="the single-task source (a task of the family)"
    )
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--factors", default="1,3")
    parser.add_argument("--out", default="runs/multitask_benchmark")
    args = parser.parse_args()
    config, out = Path(args.config).resolve(), Path(args.out).resolve()
    single = [f"pretrain.tasks=[{args.nearest}]", "multitask.conditioning=none", "scratch=false"]
    results: dict[str, Any] = {
        "config": str(config),
        "nearest": args.nearest,
        "seeds": args.seeds,
        "budgets": {},
    }
    first_multi: Path | None = None
    first_single: Path | None = None
    base_budget = None
    for factor in (int(f) for f in args.factors.split(",")):
        name = f"multi_x{factor}"
        budget_set = [] if factor == 1 else [f"finetune.timesteps={factor * (base_budget or 0)}"]
        multi = _run(config, out, name, args.seeds, budget_set, first_multi)
        base_budget = base_budget or multi["target_budget"]
        if factor == 1:
            budget_set = []
        alone = _run(config, out, f"single_x{factor}", args.seeds, [*single, *budget_set], first_single)
        first_multi, first_single = first_multi or out / name, first_single or out / f"single_x{factor}"
        results["budgets"][str(factor)] = {
            "target_budget": multi["target_budget"],
            "threshold": multi["threshold"],
            "reference_return": multi["reference_return"],
            "finetune_multitask": _row(multi, "finetune_multitask"),
            "finetune_single_nearest": _row(alone, "finetune_multitask"),
            "finetune_own_sim": _row(multi, "finetune"),
            "scratch": _row(multi, "scratch"),
            "zeroshot_multitask": _row(multi, "zeroshot_multitask"),
            "zeroshot_single_nearest": _row(alone, "zeroshot_multitask"),
        }
    out.mkdir(parents=True, exist_ok=True)
    (out / "multitask_benchmark.json").write_text(json.dumps(results, indent=1))
    print("| budget | variant | final return | steps to threshold | of the reference |")
    print("|---|---|---|---|---|")
    for factor, b in results["budgets"].items():
        for variant, row in b.items():
            if isinstance(row, dict) and "final_return" in row:
                steps = row["steps_to_threshold"]
                frac = row["fraction_of_reference"]
                reached = "not reached" if steps is None else f"{steps:,.0f}"
                share = "-" if frac is None else f"{frac:.0%}"
                print(
                    f"| {factor}x ({b['target_budget']:,}) | {variant} | {row['final_return']:.2f} | "
                    f"{reached} | {share} |"
                )


if __name__ == "__main__":
    main()
