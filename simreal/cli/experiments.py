"""Commands that run experiments and read their results: run, pretrain, finetune, distill, panel, report,
compare, sweep."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from simreal.config import ExperimentConfig, load_config
from simreal.schema import ConfigError
from simreal.training.engine.artifacts import ArtifactError, load_policy
from simreal.training.engine.device import resolve_device

log = logging.getLogger("simreal")


def _config(args: argparse.Namespace) -> ExperimentConfig:
    return load_config(args.config, _overrides(args))


def _overrides(args: argparse.Namespace) -> list[str]:
    """`--set` overrides and the options that are config keys (`--seeds`, `--device`, `--workers`)."""
    overrides = list(args.overrides)
    if args.seeds:
        try:
            seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError:
            raise ConfigError(f"--seeds: expected comma-separated integers, got {args.seeds!r}") from None
        overrides.append(f"seeds=[{','.join(map(str, seeds))}]")
    if args.device:
        overrides.append(f"device={args.device}")
    if args.workers is not None:
        overrides.append(f"workers={args.workers}")
    return overrides


def _context(cfg: ExperimentConfig, args: argparse.Namespace, resume: bool) -> Any:
    """Check everything the run will build (envs, spaces, the model), then create its directory."""
    from simreal.api import start

    return start(cfg, resume, progress=not args.no_progress)


def _print_summary(report: dict[str, Any], run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{report['experiment']}: {report['task']} -> {report['target']}")
    for col in ("variant", "final return (mean ± std)", "95% CI", "of the reference", "seeds"):
        table.add_column(col)
    for entry in report["variants"].values():
        s = entry["final_return"]
        share = entry["fraction_of_reference"]
        table.add_row(
            entry["label"],
            f"{s['mean']:.1f} ± {s['std']:.1f}",
            f"[{s['ci95'][0]:.1f}, {s['ci95'][1]:.1f}]",
            "-" if share is None else f"{100 * share:.0f}%",
            str(s["n"]),
        )
    console = Console(stderr=False)
    console.print(table)
    if report["reference_return"] is not None:
        console.print(f"reference return {report['reference_return']:.1f}: {report['reference']['note']}")
    console.print(f"sample efficiency: {report['sample_efficiency_ratio']['text']}")
    console.print(
        f"report: {run_dir / 'report.md'}  curves: {run_dir / 'curves.png'}  tensorboard --logdir {run_dir}"
    )


def cmd_run(args: argparse.Namespace) -> None:
    from simreal.api import run as run_experiment

    run = {"backend": args.backend, "address": args.address, "progress": not args.no_progress}
    if args.resume:
        if args.config:
            raise ConfigError("--resume: give the run directory only, not a config (its config.yaml is used)")
        if args.seeds:
            raise ConfigError(
                f"--resume: --seeds {args.seeds} would change the saved experiment (allowed with --resume: "
                "--device, --workers, --backend; run more seeds as a new experiment and compare both)"
            )
        doc = run_experiment(resume=args.resume, overrides=_overrides(args), **run)
    else:
        doc = run_experiment(_config(args), **run)
    _print_summary(doc, Path(doc["run_dirs"][0]))


def cmd_pretrain(args: argparse.Namespace) -> None:
    from simreal.training.methods.pretrain import pretrain

    cfg = _config(args)
    ctx = _context(cfg, args, resume=True)
    for seed in cfg.seeds:
        print(pretrain(ctx, seed, randomized=True))
        if cfg.pretrain.nominal_baseline:
            print(pretrain(ctx, seed, randomized=False))


def cmd_finetune(args: argparse.Namespace) -> None:
    from simreal.training.methods.finetune import finetune

    if args.allow_cross_task:
        args.overrides.append("finetune.allow_cross_task=true")
    cfg = _config(args)
    source = Path(args.source)
    if not source.is_file():
        raise ArtifactError(f"--from {source}: file not found")
    ctx = _context(cfg, args, resume=True)
    variant = "finetune"
    if load_policy(source).meta.get("observation", {}).get("history_window"):
        from simreal.training.methods.distill.stages import student_context

        ctx = student_context(ctx, source)  # a distilled student fine-tunes with its own view and network
        variant = "finetune_student"
    for seed in cfg.seeds:
        finetune(ctx, source, seed, variant)
        print(ctx.stage_dir(variant, seed) / "policy.pt")


def cmd_distill(args: argparse.Namespace) -> None:
    from simreal.training.methods.distill.stages import STUDENT, check_teacher, distill_student

    cfg = _config(args)
    teacher = Path(args.teacher)
    if cfg.distill is None:
        raise ConfigError(
            f"{args.config or 'the default config'}: no distill: block (allowed: a config with distill: "
            "{steps: N, ...})"
        )
    if not teacher.is_file():
        raise ArtifactError(f"{teacher}: file not found (allowed: a teacher's policy.pt)")
    check_teacher(cfg, teacher)  # before anything is written
    ctx = _context(cfg, args, resume=True)
    for seed in cfg.seeds:
        print(distill_student(ctx, teacher, seed, ctx.stage_dir(STUDENT, seed)))


def cmd_panel(args: argparse.Namespace) -> None:
    from simreal.panel import recipe, run_panel

    doc = run_panel(
        recipe(args.source, args.overrides),
        args.targets,
        args.seed,
        args.beyond,
        Path(args.out) if args.out else None,
        Path(args.reuse) if args.reuse else None,
    )
    rates = doc["win_rates"]
    for key, label in (("finetune_beats_scratch", "scratch"), ("finetune_beats_zeroshot", "zero-shot")):
        r = rates[key]
        print(f"fine-tune beats {label} on {r['rate']:.0%} of {r['targets']} targets (95% CI {r['ci95']})")
    if doc["caveat"]:
        print(f"caution: {doc['caveat']}")
    print(f"written: {Path(doc['task_file']).parent / 'panel.md'}")


def cmd_report(args: argparse.Namespace) -> None:
    from simreal.analysis.report import write_report

    run_dir = Path(args.run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir}: no config.yaml (not a simreal run directory)")
    _print_summary(write_report(run_dir), run_dir)


def cmd_sweep(args: argparse.Namespace) -> None:
    from simreal.training.methods.finetune.sweep import parse_space, sweep

    if args.trials < 1:
        raise ConfigError(f"--trials: must be >= 1, got {args.trials}")
    if args.workers < 1:
        raise ConfigError(f"--workers: must be >= 1, got {args.workers}")
    summary = sweep(
        Path(args.run_dir),
        parse_space(args.space),
        args.trials,
        resolve_device(args.device),
        name=args.name,
        backend=args.backend,
        workers=args.workers,
        address=args.address,
    )
    print(f"best {summary['best_params']} -> {summary['best_value']:.1f}; importance {summary['importance']}")
    for caveat in summary["caveats"]:
        print(f"caution: {caveat}")
    print(f"details: {Path(args.run_dir) / args.name / 'sweep.md'}")


def cmd_compare(args: argparse.Namespace) -> None:
    from simreal.analysis.compare import compare

    result = compare(
        [Path(d) for d in args.run_dirs],
        Path(args.out) if args.out else None,
        args.statistic,
        args.threshold_fraction,
        args.separate,
    )
    print(result.markdown, end="")
    print(f"written: {result.json_path}  {result.markdown_path}  {result.plot_path}")
