"""The `simreal` command line's arguments: one subparser per command."""

from __future__ import annotations

import argparse


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
    cal = sub.add_parser(
        "calibrate", help="fit the task's randomized physics and effects to a few counted target episodes"
    )
    cal.add_argument("model", nargs="?", help="a policy.pt that acts on the target (not with --from-log)")
    cal.add_argument("--task", help="the task YAML (or packaged key) to calibrate")
    cal.add_argument(
        "--target",
        help="with --task, one of its targets' names; alone, a simreal target id of a packaged task",
    )
    cal.add_argument("--episodes", type=int, default=10, help="episodes to run on the target")
    cal.add_argument(
        "--excite",
        type=float,
        default=0.0,
        help="Gaussian noise std added to the policy's actions (action units)",
    )
    cal.add_argument(
        "--mode",
        choices=["center", "cover"],
        default="cover",
        help="how ranges are rewritten (see the guide)",
    )
    cal.add_argument("--params", help="comma-separated axes to fit (default: every one the task randomizes)")
    cal.add_argument(
        "--segments",
        type=int,
        help="recorded segments replayed per candidate of the fit (default 96; fewer: faster, noisier)",
    )
    cal.add_argument(
        "--stds",
        type=float,
        help="standard deviations of an identified value a calibrated range holds each side (default 4)",
    )
    cal.add_argument("--from-log", dest="log", help="calibrate from a log file (.npz) instead of a live run")
    cal.add_argument("--out", help="where the calibration files go (default: calibration/<task>[_<target>])")
    cal.add_argument("--seed", type=int, default=0)
    cal.add_argument(
        "--workers", type=int, default=0, help="processes sharing the fit (0 = one per core; same result)"
    )
    cal.add_argument("--env-kwargs", default="{}", metavar="JSON", help="constructor arguments of the target")
    cal.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE")
    cal.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
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
    pan.add_argument(
        "--reuse",
        metavar="PANEL_DIR",
        help="another panel of the same targets whose recipe differs only in fine-tuning: its pretraining, "
        "zero-shot and scratch stages are linked, not rerun",
    )
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
