"""`simreal` command line: run, pretrain, finetune, distill, evaluate, report, envs, compare, export.

Every config problem is reported as one line naming the key path, before any training starts.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from simreal.config import ExperimentConfig, load_config
from simreal.schema import ConfigError
from simreal.training.engine.artifacts import ArtifactError, load_policy
from simreal.training.engine.device import resolve_device

log = logging.getLogger("simreal")


def _common(p: argparse.ArgumentParser, positional: bool = True) -> None:
    help_ = "experiment YAML (default: the packaged quickstart)"
    if positional:
        p.add_argument("config", nargs="?", default=None, help=help_)
    else:
        p.add_argument("--config", default=None, help=help_)
    p.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2 (overrides the config)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="overrides the config's device")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override any config value (repeatable)",
    )
    p.add_argument("--workers", type=int, help="parallel seed processes (0 = one per core, up to the seeds)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="simreal", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="the whole transfer experiment: pretrain, transfer, fine-tune, compare")
    _common(run)
    run.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its checkpoints")
    run.add_argument("--backend", choices=["local", "ray"], default="local", help="where stages run")
    run.add_argument("--address", help="with --backend ray: the cluster to join (default: a local one)")
    pre = sub.add_parser("pretrain", help="pretrain on the randomized (and nominal) source sim only")
    _common(pre)
    ft = sub.add_parser("finetune", help="fine-tune a pretrained policy on the config's target")
    _common(ft)
    ft.add_argument("--from", dest="source", required=True, metavar="MODEL", help="a policy.pt artifact")
    ft.add_argument(
        "--allow-cross-task",
        action="store_true",
        help="fine-tune a policy pretrained on another task whose spaces happen to match",
    )
    dist = sub.add_parser(
        "distill",
        help="distill a privileged teacher artifact into a history-based student (the distill: block)",
    )
    dist.add_argument("teacher", help="a teacher's policy.pt (e.g. RUN/pretrain_teacher/seed0/policy.pt)")
    _common(dist, positional=False)
    ev = sub.add_parser("evaluate", help="evaluate a policy artifact on an env")
    ev.add_argument("model", help="a policy.pt artifact")
    _target_options(ev, "--env")
    ev.add_argument("--env-kwargs", default="{}", metavar="JSON", help="constructor arguments of the env")
    ev.add_argument("--episodes", type=int, default=10)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument(
        "--n-envs", type=int, default=1, help="env instances side by side (the same returns; not for a robot)"
    )
    ev.add_argument("--json", dest="json_path", help="write the results to this JSON file")
    ev.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    dg = sub.add_parser(
        "diagnose", help="measure a target's gap to a policy's source with a few target episodes"
    )
    dg.add_argument("model", help="a pretrained policy.pt artifact")
    _target_options(dg, "--target")
    dg.add_argument("--episodes", type=int, default=5, help="episodes on the source and on the target")
    dg.add_argument("--seed", type=int, default=0)
    dg.add_argument("--env-kwargs", default="{}", metavar="JSON", help="constructor arguments of the target")
    dg.add_argument("--out", help="where diagnose.json/.md go (default: beside MODEL)")
    dg.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    pan = sub.add_parser(
        "panel", help="an experiment's recipe on a panel of random targets drawn from its task"
    )
    pan.add_argument(
        "source", metavar="TASK_OR_EXPERIMENT", help="an experiment YAML, or a task (key or file)"
    )
    pan.add_argument("--targets", type=int, required=True, help="how many targets to draw")
    pan.add_argument("--seed", type=int, default=0, help="the panel's seed (the same seed, the same targets)")
    pan.add_argument(
        "--beyond", type=float, default=2.0, help="how far outside the pretraining ranges a value may lie (x)"
    )
    pan.add_argument("--out", help="where panel_task.yaml, runs/ and panel.json/.md/.png go")
    pan.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    rob = sub.add_parser(
        "robustness", help="a policy's zero-shot return over a grid of one or two shifts of the simulation"
    )
    rob.add_argument("model", help="a policy.pt artifact")
    rob.add_argument("--task", required=True, help="the task YAML (or packaged key) the policy learned")
    rob.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="NAME=LOW:HIGH[:N]",
        help="a physics parameter's scale (body_mass, body_mass/pole) or an effect argument (action_delay, "
        "observation_noise.std); one or two",
    )
    rob.add_argument("--episodes", type=int, default=5, help="episodes a cell (the same seeds in each)")
    rob.add_argument("--out", help="where robustness.json/.png go (default: beside MODEL, robustness/)")
    rob.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE")
    rob.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    rep = sub.add_parser("report", help="rewrite report.json/report.md/curves.png of a run directory")
    rep.add_argument("run_dir")
    sw = sub.add_parser("sweep", help="search fine-tuning settings over a run's pretrained policies (Optuna)")
    sw.add_argument("run_dir")
    sw.add_argument(
        "--space",
        action="append",
        default=[],
        metavar="KEY.PATH=KIND:ARGS",
        help="e.g. finetune.learning_rate=log:1e-5:1e-3, finetune.freeze_layers=int:0:2",
    )
    sw.add_argument("--trials", type=int, default=10)
    sw.add_argument("--name", default="sweep", help="directory under RUN_DIR for this sweep (must be new)")
    sw.add_argument("--workers", type=int, default=1, help="trials at once (1: in this process)")
    sw.add_argument("--backend", choices=["local", "ray"], default="local")
    sw.add_argument("--address", help="Ray cluster address (with --backend ray)")
    sw.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    envs_cmd = sub.add_parser("envs", help="list tasks, their ids, randomizable parameters and targets")
    envs_cmd.add_argument("--task", help="list this task YAML (yours) instead of the packaged tasks")
    cmp = sub.add_parser("compare", help="curves and transfer table across seeds and run directories")
    cmp.add_argument("run_dirs", nargs="+", metavar="EXPERIMENT_DIR", help="merged per variant")
    cmp.add_argument("--out", help="where compare.md/.json/.png go (default: the first directory)")
    cmp.add_argument(
        "--separate",
        action="store_true",
        help="each run's variants as rows of their own (runs with different settings), not pooled seeds",
    )
    cmp.add_argument("--statistic", choices=["mean", "iqm"], default="mean", help="across seeds")
    cmp.add_argument(
        "--threshold-fraction",
        type=float,
        help="time-to-threshold fraction (default: the config's evaluation.threshold_fraction, 0.9)",
    )
    ref = sub.add_parser(
        "config-reference", help="the configuration reference (every key, type, default, doc) from the schema"
    )
    ref.add_argument("--out", help="write it here (default: print it), e.g. docs/reference/config.md")
    ref.add_argument("--check", action="store_true", help="with --out: fail if the file is not current")
    exp = sub.add_parser("export", help="export a policy artifact's deterministic policy (ONNX, safetensors)")
    exp.add_argument("model", help="a policy.pt artifact")
    exp.add_argument("--format", dest="fmt", choices=["onnx", "safetensors"], required=True)
    exp.add_argument("--out", help="output file (default: beside MODEL, e.g. policy.onnx)")
    return parser


def _target_options(parser: argparse.ArgumentParser, env_option: str) -> None:
    """How `evaluate` and `diagnose` name the env they act on: an env id, or a task file's target."""
    if env_option == "--env":
        parser.add_argument(
            "--env",
            help="a registered env id (simreal/..., Hopper-v5) or Gymnasium's module:EnvId; "
            "or name a task file's target with --task FILE --target NAME",
        )
        parser.add_argument("--target", help="with --task: the target's name")
    else:
        parser.add_argument(
            "--target",
            help="the target: a registered env id (e.g. simreal/KukaReach-Target-Mujoco-v0) or Gymnasium's "
            "module:EnvId; with --task FILE, the name of one of its targets",
        )
        parser.add_argument("--env", help="the target's env id (the same as --target ID)")
    parser.add_argument("--task", help="a task YAML (or packaged key) whose target to act on")
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import this module first (it may register the env id; repeatable)",
    )


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


def _evaluation_env(args: argparse.Namespace, env_option: str = "--env") -> tuple[str, dict[str, Any]]:
    """The env id and constructor arguments `evaluate` or `diagnose` was pointed at (one-line errors):
    `--task FILE --target NAME`, or an env id (`--env ID`; for diagnose also `--target ID`)."""

    from simreal.simulation.references import import_all
    from simreal.simulation.registry import register_task

    import_all(args.imports, "--import")
    kwargs = _env_kwargs(args.env_kwargs)
    if args.task is not None:
        if args.env is not None or args.target is None:
            raise ConfigError("--task: give --target NAME with it, and no --env")
        task = register_task(args.task, Path.cwd())
        task.spec.target(args.target)
        return task.target_id(args.target), kwargs
    name, option = (args.env, "--env") if args.env is not None else (args.target, env_option)
    if env_option == "--env" and args.env is None and args.target is not None:
        raise ConfigError(
            "--target: names a target of --task FILE (allowed: --env ID, or --task FILE --target NAME)"
        )
    if name is None:
        raise ConfigError(f"{env_option}: required (or --task FILE --target NAME)")
    return _registered_id(name, option), kwargs


def _env_kwargs(text: str) -> dict[str, Any]:
    """`--env-kwargs JSON`: a JSON object (one-line errors)."""
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"--env-kwargs: not JSON ({err.msg})") from None
    if not isinstance(kwargs, dict):
        raise ConfigError(f"--env-kwargs: expected a JSON object, got {text}")
    return kwargs


def _registered_id(name: str, option: str) -> str:
    """A registered env id, or Gymnasium's `module:EnvId` (the module imported first)."""
    import gymnasium as gym

    from simreal.simulation.references import import_all

    env_id = name
    if ":" in env_id:
        module, _, env_id = env_id.partition(":")
        import_all([module], option)
    if env_id not in gym.registry:
        raise ConfigError(
            f"{option} {name}: not a registered env id (see `simreal envs`; add --import MODULE for "
            "an id your package registers, or use --task FILE --target NAME)"
        )
    return env_id


def cmd_evaluate(args: argparse.Namespace) -> None:
    import gymnasium as gym

    from simreal.training.engine.evaluation import evaluate
    from simreal.training.engine.sb3.loading import load_for_env

    if args.episodes < 1:
        raise ConfigError(f"--episodes: must be >= 1, got {args.episodes}")
    if args.n_envs < 1:
        raise ConfigError(f"--n-envs: must be >= 1, got {args.n_envs}")
    env_id, kwargs = _evaluation_env(args)
    loaded = load_for_env(
        Path(args.model), lambda: gym.make(env_id, **kwargs), resolve_device(args.device), args.seed
    )
    result = evaluate(
        loaded.model, loaded.make_env, args.episodes, args.seed, loaded.obs_rms, loaded.encoder, args.n_envs
    )
    out = {
        "env": env_id,
        "env_kwargs": kwargs,
        "model": args.model,
        "episodes": args.episodes,
        "mean_return": result.mean_return,
        "std_return": result.std_return,
        "success_rate": result.success_rate,
        "returns": result.returns.tolist(),
    }
    print(json.dumps(out, indent=1))
    if args.json_path:
        from simreal.training.engine.artifacts import atomic_write_text

        atomic_write_text(json.dumps(out, indent=1), args.json_path)


def cmd_diagnose(args: argparse.Namespace) -> None:
    from simreal.analysis.diagnose import diagnose, to_markdown, write

    if args.episodes < 2:
        raise ConfigError(f"--episodes: need >= 2 for held-out estimates, got {args.episodes}")
    target, kwargs = _evaluation_env(args, "--target")
    model = Path(args.model)
    result = diagnose(model, target, args.episodes, args.seed, resolve_device(args.device), kwargs)
    out = Path(args.out) if args.out else model.parent
    write(result, out)
    print(to_markdown(result), end="")
    print(f"written: {out / 'diagnose.json'}  {out / 'diagnose.md'}")


def cmd_panel(args: argparse.Namespace) -> None:
    from simreal.panel import recipe, run_panel

    doc = run_panel(
        recipe(args.source, args.overrides),
        args.targets,
        args.seed,
        args.beyond,
        Path(args.out) if args.out else None,
    )
    rates = doc["win_rates"]
    for key, label in (("finetune_beats_scratch", "scratch"), ("finetune_beats_zeroshot", "zero-shot")):
        r = rates[key]
        print(f"fine-tune beats {label} on {r['rate']:.0%} of {r['targets']} targets (95% CI {r['ci95']})")
    if doc["caveat"]:
        print(f"caution: {doc['caveat']}")
    print(f"written: {Path(doc['task_file']).parent / 'panel.md'}")


def cmd_robustness(args: argparse.Namespace) -> None:
    from simreal.analysis.robustness import parse_axis, robustness
    from simreal.simulation.references import import_all
    from simreal.simulation.registry import register_task

    if not 1 <= len(args.sweep) <= 2:
        raise ConfigError(f"--sweep: give one or two axes, got {len(args.sweep)}")
    if args.episodes < 1:
        raise ConfigError(f"--episodes: must be >= 1, got {args.episodes}")
    model = Path(args.model)
    if not model.is_file():
        raise ArtifactError(f"{model}: file not found (allowed: a policy.pt)")
    import_all(args.imports, "--import")
    task = register_task(args.task, Path.cwd())
    axes = [parse_axis(text, task) for text in args.sweep]
    out = Path(args.out) if args.out else model.parent / "robustness"
    data = robustness(model, task, axes, args.episodes, resolve_device(args.device), out)
    print(f"zero-shot return over the grid: {data['lowest']:.1f} .. {data['highest']:.1f}")
    print(f"written: {out / 'robustness.json'}, robustness.png, tensorboard/")


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


def cmd_envs(args: argparse.Namespace) -> None:
    from simreal.simulation.listing import describe_task
    from simreal.simulation.registry import register_task
    from simreal.simulation.tasks import packaged_tasks

    keys = [args.task] if args.task else list(packaged_tasks())
    for key in keys:
        print(describe_task(register_task(key, Path.cwd())), end="")


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


def cmd_export(args: argparse.Namespace) -> None:
    from simreal.training.engine.export import export_policy, sidecar_path

    out = export_policy(args.model, args.fmt, args.out)
    print(f"exported: {out}  description: {sidecar_path(out)}")


def cmd_config_reference(args: argparse.Namespace) -> None:
    from simreal.docgen import config_reference

    text = config_reference()
    if args.out is None:
        print(text, end="")
        return
    out = Path(args.out)
    if args.check:
        if not out.is_file() or out.read_text() != text:
            raise ConfigError(f"{out}: not current (regenerate: simreal config-reference --out {out})")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


COMMANDS = {
    "run": cmd_run,
    "pretrain": cmd_pretrain,
    "finetune": cmd_finetune,
    "distill": cmd_distill,
    "evaluate": cmd_evaluate,
    "report": cmd_report,
    "robustness": cmd_robustness,
    "panel": cmd_panel,
    "diagnose": cmd_diagnose,
    "envs": cmd_envs,
    "sweep": cmd_sweep,
    "compare": cmd_compare,
    "export": cmd_export,
    "config-reference": cmd_config_reference,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if os.getcwd() not in sys.path:  # a user's package beside the experiment imports as with `python -m`
        sys.path.insert(0, os.getcwd())
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S"
    )
    log.setLevel(logging.INFO)
    try:
        COMMANDS[args.command](args)
    except (
        ConfigError,
        ArtifactError,
        FileExistsError,
        PermissionError,
        FileNotFoundError,
        ValueError,
    ) as err:
        print(f"simreal: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
