"""The transfer benchmark suite: three tasks, five seeds, fixed budgets, targets outside the training range.

Usage:
    python benchmarks/suite.py                 # full budgets (hours on a 2-core CPU; use a GPU box or Ray)
    python benchmarks/suite.py --backend ray   # stages as Ray tasks
    python benchmarks/suite.py --smoke --out /tmp/suite   # tiny budgets, 2 seeds: checks the plumbing

For each task it runs the whole experiment (`simreal run`) on the task's extrapolation target, then
reads its report (the `simreal-results-v1` document) and writes, between the suite markers of
BENCHMARKS.md (or `--markdown`), a table with every task's final returns, the reference that says what
"good" means (the reference stage: scratch on the target for 10x the budget), the sample-efficiency ratio
in words (fine-tune's target steps to 90% of the way from untrained to the reference, scratch's read from
the reference stage) and the zero-shot returns as fractions of that way. Curves go to
`docs/benchmarks/<task>.png`.
Goals (issue #5): ratio >= 5x on at least two tasks; randomized zero-shot >= 80% and clearly above nominal.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from sections import write_section

from simreal.cli import main as simreal_main

ROOT = Path(__file__).resolve().parents[1]
SUITE = {  # task -> (config, target outside the training range)
    "inverted_pendulum": ("configs/inverted_pendulum_extrapolate.yaml", "extrapolate"),
    "reacher": ("configs/reacher.yaml", "extrapolate"),
    "kuka_reach": ("configs/kuka_reach.yaml", "extrapolate"),
}
SEEDS = "0,1,2,3,4"
SMOKE = [
    "pretrain.timesteps=256",
    "finetune.timesteps=256",
    "reference.timesteps=512",
    "evaluation.every_steps=128",
    "evaluation.episodes=1",
    "evaluation.final_episodes=2",
    "algo.net_arch=[16]",
    "checkpoint_every_steps=128",
    "finetune.auto=null",  # a fifth of 256 steps holds no candidate rollouts; the guard has its own tests
]
SMOKE_ALGO = {
    "PPO": ["algo.kwargs.n_steps=64", "algo.kwargs.batch_size=32", "algo.kwargs.n_epochs=1"],
    "SAC": ["algo.kwargs.learning_starts=64", "algo.kwargs.buffer_size=2000", "algo.kwargs.batch_size=32"],
}
START, END = "<!-- suite:start -->", "<!-- suite:end -->"


def run_task(task: str, out: Path, smoke: bool, backend: str) -> dict[str, Any]:
    config, target = SUITE[task]
    algo = "SAC" if "kuka" in config else "PPO"
    overrides = [f"output_dir={out}", f"experiment=suite_{task}", f"target={target}"]
    if smoke:
        overrides += SMOKE + SMOKE_ALGO[algo]
    args = [
        "run",
        str(ROOT / config),
        "--no-progress",
        "--seeds",
        "0,1" if smoke else SEEDS,
        "--backend",
        backend,
    ]
    for item in overrides:
        args += ["--set", item]
    run_dir = out / f"suite_{task}"
    if (run_dir / "config.yaml").exists():
        args = ["run", "--no-progress", "--resume", str(run_dir), "--backend", backend]
    if simreal_main(args) != 0:
        raise SystemExit(f"suite: {task} failed")
    return json.loads((run_dir / "report.json").read_text())


ZERO_SHOT = ("zeroshot_randomized", "zeroshot_nominal")


def _mean(report: dict[str, Any], variant: str) -> str:
    v = report["variants"].get(variant)
    return "-" if v is None else f"{v['final_return']['mean']:.1f}"


def _share(report: dict[str, Any], variant: str) -> str:
    v = report["variants"].get(variant)
    share = None if v is None else v["fraction_of_reference"]
    return "n/a" if share is None else f"{share:.0%}"


def table(reports: dict[str, dict[str, Any]], command: str) -> str:
    lines = [
        START,
        "",
        f"Command: `{command}`",
        "",
        "Final returns on the target (means over seeds); the reference is scratch on the target for 10x the "
        "budget (`reference.timesteps`), untrained is its first evaluation:",
        "",
        "| task | target | seeds | pretrain / target steps | untrained | reference | fine-tune | scratch "
        "| zero-shot randomized | zero-shot nominal |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task, rep in reports.items():
        cells = [_mean(rep, v) for v in ("finetune", "scratch", *ZERO_SHOT)]
        untrained, ref = (rep[k] for k in ("untrained_return", "reference_return"))
        yardstick = ["-" if x is None else f"{x:.1f}" for x in (untrained, ref)]
        seeds = rep["variants"]["finetune"]["final_return"]["n"]
        steps = f"{rep['pretrain_steps']:,} / {rep['target_budget']:,}"
        lines.append(
            f"| {task} | {rep['target']} | {seeds} | {steps} | " + " | ".join([*yardstick, *cells]) + " |"
        )
    lines += [
        "",
        "| task | sample efficiency | zero-shot randomized / reference | zero-shot nominal / reference "
        "| P(randomized > nominal) |",
        "|---|---|---|---|---|",
    ]
    for task, rep in reports.items():
        p = rep["comparisons"].get("p_randomized_beats_nominal_zeroshot")
        lines.append(
            f"| {task} | {rep['sample_efficiency_ratio']['text']} | {_share(rep, 'zeroshot_randomized')} "
            f"| {_share(rep, 'zeroshot_nominal')} | {'-' if p is None else f'{p:.2f}'} |"
        )
    lines += ["", "Curves: " + ", ".join(f"[{t}](docs/benchmarks/{t}.png)" for t in reports), "", END]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "runs" / "suite"))
    parser.add_argument("--smoke", action="store_true", help="tiny budgets and 2 seeds")
    parser.add_argument("--backend", choices=["local", "ray"], default="local")
    parser.add_argument("--markdown", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--figures", default=str(ROOT / "docs" / "benchmarks"))
    args = parser.parse_args()
    out, figures = Path(args.out), Path(args.figures)
    reports = {task: run_task(task, out, args.smoke, args.backend) for task in SUITE}
    figures.mkdir(parents=True, exist_ok=True)
    for task in reports:
        shutil.copyfile(out / f"suite_{task}" / "curves.png", figures / f"{task}.png")
    command = "python benchmarks/suite.py" + (" --smoke" if args.smoke else "")
    section = table(reports, command)
    write_section(Path(args.markdown), START, END, section, "Transfer benchmark suite")
    print(section)


if __name__ == "__main__":
    main()
