"""Does guarded fine-tuning hold against scratch and zero-shot at 1x, 3x and 10x the target budget?

For one task config (default: the pendulum extrapolation target) and `--seeds`, pretraining runs once;
then for every budget multiple and every fine-tuning variant a run reuses those pretrained policies (their
stage directories are copied in, so those stages are skipped), and scratch and the reference are shared
across variants (scratch's directories copied from the first variant of the budget; the reference stage
is reused through the shared reference cache, one length for every budget: `--reference-steps`).
Evaluations scale with the budget (`--evaluations` per budget) so that evaluating long-budget policies
does not dwarf training them.

Variants (each a list of `--set` overrides on top of the config):
    fixed:    the config's frozen depth and learning rate, unguarded (no keep_best, no auto)
    guarded:  what the shipped configs use - keep_best with the budget-aware choice of frozen depth
              (finetune.auto over freeze_layers 0 and 1, a fifth of the budget)
    keep_best, auto: each guard alone (the ablation)

Writes a table between the markers of BENCHMARKS.md: per budget, final return (mean over seeds) of
fine-tune per variant, scratch and zero-shot, and whether each variant is >= scratch and >= zero-shot.
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

AUTO = "finetune.auto={candidates: {freeze_layers: [0, 1]}, budget_fraction: 0.2}"
VARIANTS: dict[str, list[str]] = {
    "fixed": ["finetune.keep_best=false", "finetune.auto=null"],
    "guarded": ["finetune.keep_best=true", AUTO],
    "keep_best": ["finetune.keep_best=true", "finetune.auto=null"],
    "auto": ["finetune.keep_best=false", AUTO],
}


def _run(config: Path, out: Path, name: str, seeds: str, overrides: list[str], command: str = "run") -> Any:
    """`simreal run` (or `pretrain`) into `out/name`; a finished run's report is read, not redone."""
    args = [command, str(config), "--no-progress", "--seeds", seeds, "--set", f"output_dir={out}"]
    args += ["--set", f"experiment={name}"]
    for item in overrides:
        args += ["--set", item]
    report = out / name / "report.json"
    if report.exists() or (command == "pretrain" and (out / name / "pretrain_randomized").is_dir()):
        return json.loads(report.read_text()) if report.exists() else None
    if (out / name / "config.yaml").exists():  # an interrupted run: continue it with its own config
        args = [command, "--resume", str(out / name), "--no-progress"]
    if simreal_main(args) != 0:
        raise SystemExit(f"guards: {name} failed")
    return json.loads(report.read_text()) if command == "run" else None


def _copy_stages(src: Path, dst: Path, variants: tuple[str, ...]) -> None:
    for variant in variants:
        if (src / variant).is_dir() and not (dst / variant).exists():
            shutil.copytree(src / variant, dst / variant)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "inverted_pendulum_extrapolate.yaml"))
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--budgets", default="1,3,10", help="multiples of the config's finetune.timesteps")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--evaluations", type=int, default=5, help="curve evaluations per budget")
    parser.add_argument("--episodes", type=int, default=3, help="episodes per curve evaluation")
    parser.add_argument(
        "--reference-steps",
        type=int,
        default=None,
        help="default: 10x the base budget; 0: no reference stage",
    )
    parser.add_argument("--set", action="append", default=[], help="extra config override, e.g. target=...")
    parser.add_argument("--out", default=str(ROOT / "runs" / "guards"))
    parser.add_argument("--markdown", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args()
    import yaml

    config, out = Path(args.config), Path(args.out)
    base = yaml.safe_load(config.read_text())
    budget, rollout = (
        int(base["finetune"]["timesteps"]),
        int(base["algo"].get("kwargs", {}).get("n_steps", 1)),
    )
    reference = 10 * budget if args.reference_steps is None else args.reference_steps
    reference_every = 4 * max(rollout, budget // args.evaluations // rollout * rollout)
    common = [f"evaluation.episodes={args.episodes}", *args.set]
    if reference > 0:
        common += [f"reference.timesteps={reference}", f"reference.every_steps={reference_every}"]
    else:
        common += ["reference=false"]  # one reference stage (cache key) for every budget, or none
    _run(config, out, "pretrained", args.seeds, common, command="pretrain")
    table: dict[int, dict[str, Any]] = {}
    for multiple in (int(m) for m in args.budgets.split(",")):
        steps = multiple * budget
        every = max(rollout, steps // args.evaluations // rollout * rollout)
        shared = [*common, f"finetune.timesteps={steps}", f"evaluation.every_steps={every}"]
        first: Path | None = None
        for variant in args.variants.split(","):
            name = f"x{multiple}_{variant}"
            run_dir = out / name
            run_dir.mkdir(parents=True, exist_ok=True)
            _copy_stages(out / "pretrained", run_dir, ("pretrain_randomized", "pretrain_nominal"))
            if first is not None:
                _copy_stages(first, run_dir, ("scratch", "zeroshot_randomized", "zeroshot_nominal"))
            report = _run(config, out, name, args.seeds, [*shared, *VARIANTS[variant]])
            first = first or run_dir
            table.setdefault(multiple, {})[variant] = report
    key = "-".join([config.stem, *(item.replace("=", "-") for item in args.set)])
    start, end = (f"<!-- guards:{key}:start -->", f"<!-- guards:{key}:end -->")
    text = _section(table, args, start, end)
    write_section(Path(args.markdown), start, end, text, "Guarded fine-tuning at 1x, 3x and 10x the budget")
    print(text)


def _mean(report: dict[str, Any], variant: str) -> float:
    return float(report["variants"][variant]["final_return"]["mean"])


def _below(report: dict[str, Any], variant: str, other: str) -> int:
    """Seeds on which `variant` ends below `other` (the same seed's run)."""
    mine, theirs = (  # seeds are stage directories: .../<variant>/seed<N>
        dict(
            zip(
                (Path(s).name for s in report["variants"][v]["seeds"]),
                report["variants"][v]["per_seed_final_return"],
                strict=True,
            )
        )
        for v in (variant, other)
    )
    return sum(float(mine[s]) < float(theirs[s]) for s in mine if s in theirs)


def _section(table: dict[int, dict[str, Any]], args: argparse.Namespace, start: str, end: str) -> str:
    variants = args.variants.split(",")
    extra = "".join(f" --set {item}" for item in args.set)
    reference = "" if args.reference_steps is None else f" --reference-steps {args.reference_steps}"
    if (args.evaluations, args.episodes) != (5, 3):  # the defaults
        reference += f" --evaluations {args.evaluations} --episodes {args.episodes}"
    lines = [
        start,
        "",
        f"Command: `python benchmarks/guards.py --config {Path(args.config).resolve().relative_to(ROOT)}"
        f"{extra} --seeds {args.seeds} --budgets {args.budgets} --variants {args.variants}{reference}`",
        "",
        "Final return on the target, mean over seeds (>= scratch / >= zero-shot randomized, by the mean;"
        " then the number of seeds that end below their own zero-shot policy):",
        "",
        "| budget | "
        + " | ".join(f"fine-tune: {v}" for v in variants)
        + " | scratch | zero-shot randomized |",
        "|---" * (len(variants) + 3) + "|",
    ]
    for multiple, reports in table.items():
        any_report = next(iter(reports.values()))
        scratch, zero = _mean(any_report, "scratch"), _mean(any_report, "zeroshot_randomized")
        cells = []
        for v in variants:
            ft = _mean(reports[v], "finetune")
            below = _below(reports[v], "finetune", "zeroshot_randomized")
            verdict = f"{'yes' if ft >= scratch else 'NO'} / {'yes' if ft >= zero else 'NO'}"
            cells.append(f"{ft:.1f} ({verdict}; {below} below)")
        budget = any_report["target_budget"]
        lines.append(
            f"| {multiple}x ({budget:,}) | " + " | ".join(cells) + f" | {scratch:.1f} | {zero:.1f} |"
        )
    lines += ["", end]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
