"""The transfer benchmark suite: three tasks, five seeds, fixed budgets, targets outside the training range.

Usage:
    python benchmarks/suite.py                 # full budgets (hours on a 2-core CPU; use a GPU box or Ray)
    python benchmarks/suite.py --backend ray   # stages as Ray tasks
    python benchmarks/suite.py --smoke --out /tmp/suite   # tiny budgets, 2 seeds: checks the plumbing

For each task it runs the whole experiment (`simreal run`) on the task's extrapolation target, then
reads its report and writes, between the suite markers of BENCHMARKS.md (or `--markdown`), a table with
every task's sample-efficiency ratio (scratch / fine-tune target steps to 90% of scratch's learned range)
with its bootstrap CI, and the zero-shot return of the randomized and the nominal policy as fractions of
the best target-trained policy's (fine-tune or scratch at the full budget, whichever ends higher),
measured from the untrained return (scratch's first evaluation) so that negative rewards work.
Curves go to `docs/benchmarks/<task>.png`.
Goals (issue #5): ratio >= 5x on at least two tasks; randomized zero-shot >= 80% and clearly above nominal.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

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
    "evaluation.every_steps=128",
    "evaluation.episodes=1",
    "evaluation.final_episodes=2",
    "algo.net_arch=[16]",
    "checkpoint_every_steps=128",
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


def _mean(report: dict[str, Any], variant: str) -> float | None:
    v = report["variants"].get(variant)
    return None if v is None else float(v["final_return"]["mean"])


def _reference(report: dict[str, Any]) -> tuple[str, float] | None:
    """The best policy trained on the target (fine-tune or scratch, by mean final return)."""
    trained = [(v, m) for v in ("finetune", "scratch") if (m := _mean(report, v)) is not None]
    return max(trained, key=lambda vm: vm[1]) if trained else None


def _fractions(run_dir: Path, report: dict[str, Any]) -> list[str]:
    """Zero-shot returns as fractions of the best target-trained policy's, from the untrained return:
    (return - untrained) / (target-trained - untrained), sign-safe for negative rewards; all seed means.
    Only defined when that policy beats both zero-shot policies: a target-trained reference weaker than
    zero-shot (a target budget too small to train an oracle) would make any fraction look good."""
    ref = _reference(report)
    zero_shot = [_mean(report, v) for v in ZERO_SHOT]
    if ref is None or any(z is None for z in zero_shot) or "scratch" not in report["variants"]:
        return ["n/a"] * len(ZERO_SHOT)
    untrained = _untrained(run_dir)
    if ref[1] <= max(z for z in zero_shot if z is not None) or ref[1] <= untrained:
        return ["n/a: no target-trained policy beats zero-shot"] * len(ZERO_SHOT)
    return [f"{(z - untrained) / (ref[1] - untrained):.0%}" for z in zero_shot if z is not None]


def _untrained(run_dir: Path) -> float:
    """Scratch's first evaluation (before any target step), mean over seeds."""
    firsts = [
        json.loads(p.read_text())[0]["mean_return"] for p in sorted(run_dir.glob("scratch/seed*/curve.json"))
    ]
    return sum(firsts) / len(firsts)


def _no_ratio(run_dir: Path, report: dict[str, Any]) -> str:
    """Why there is no ratio, in words: scratch did not improve on its untrained return in the budget."""
    scratch = report["variants"].get("scratch")
    if scratch is None:
        return "n/a (no scratch run)"
    final, start = scratch["final_return"]["mean"], _untrained(run_dir)
    return (
        f"undefined: scratch did not learn in {report['target_budget']:,} target steps "
        f"(final {final:.1f} vs untrained {start:.1f})"
    )


def table(reports: dict[str, dict[str, Any]], out: Path, command: str) -> str:
    lines = [
        START,
        "",
        f"Command: `{command}`",
        "",
        "Final returns on the target (means over seeds; untrained = scratch's first evaluation):",
        "",
        "| task | target | seeds | pretrain / target steps | untrained | fine-tune | scratch | zero-shot "
        "randomized | zero-shot nominal |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task, rep in reports.items():
        run_dir = out / f"suite_{task}"
        cells = [
            f"{m:.1f}" if (m := _mean(rep, v)) is not None else "-"
            for v in ("finetune", "scratch", *ZERO_SHOT)
        ]
        lines.append(
            f"| {task} | {rep['target']} | {len(rep['seeds'])} | {rep['pretrain_steps']:,} / "
            f"{rep['target_budget']:,} | {_untrained(run_dir):.1f} | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        "| task | sample-efficiency ratio (scratch / fine-tune target steps) [95% CI] | zero-shot randomized "
        "/ best target-trained | zero-shot nominal / best target-trained | P(randomized > nominal) |",
        "|---|---|---|---|---|",
    ]
    for task, rep in reports.items():
        t = rep["transfer"]
        run_dir = out / f"suite_{task}"
        ratio = t.get("ratio_text") or _no_ratio(run_dir, rep)
        zr, zn = _fractions(run_dir, rep)
        p = t.get("p_randomized_beats_nominal_zeroshot")
        lines.append(f"| {task} | {ratio} | {zr} | {zn} | {'-' if p is None else f'{p:.2f}'} |")
    lines += ["", "Curves: " + ", ".join(f"[{t}](docs/benchmarks/{t}.png)" for t in reports), "", END]
    return "\n".join(lines)


def write_section(markdown: Path, section: str) -> None:
    text = markdown.read_text() if markdown.exists() else ""
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n## Transfer benchmark suite\n\n" + section + "\n"
    markdown.write_text(text)


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
    section = table(reports, out, command)
    write_section(Path(args.markdown), section)
    print(section)


if __name__ == "__main__":
    main()
