"""Commands that act on one policy or task: evaluate, diagnose, calibrate, robustness, envs, export, and
the configuration reference."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from simreal.schema import ConfigError
from simreal.training.engine.artifacts import ArtifactError
from simreal.training.engine.device import resolve_device

log = logging.getLogger("simreal")


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


def cmd_calibrate(args: argparse.Namespace) -> None:
    from simreal.simulation.calibration.replay import SEGMENTS
    from simreal.simulation.calibration.task import STDS
    from simreal.simulation.references import import_all
    from simreal.simulation.registry import TASKS, register_packaged, register_task
    from simreal.training.methods.calibrate import run_calibration

    import_all(args.imports, "--import")
    target = args.target
    if args.task is not None:
        task = register_task(args.task, Path.cwd())
    elif target is not None and not args.log:
        register_packaged()
        found = [(t, n) for t in TASKS.values() for n in t.spec.targets if t.target_id(n) == target]
        if not found:
            raise ConfigError(
                f"--target {target}: not a packaged task's target id (allowed: e.g. "
                "simreal/InvertedPendulum-Target-Extrapolate-v0, or --task FILE --target NAME)"
            )
        task, target = found[0]
    else:
        raise ConfigError("--task: required (the task whose simulation is calibrated)")
    if args.workers < 0:
        raise ConfigError(f"--workers: must be >= 0 (0 = one per core), got {args.workers}")
    params = [p.strip() for p in args.params.split(",")] if args.params else None
    where = f"{task.name}{'_' + target if target else ''}"
    out = Path(args.out) if args.out else Path("calibration") / where
    summary = run_calibration(
        task,
        out,
        target=target,
        policy=Path(args.model) if args.model else None,
        log=Path(args.log) if args.log else None,
        episodes=args.episodes,
        excite=args.excite,
        mode=args.mode,
        params=params,
        seed=args.seed,
        device=resolve_device(args.device),
        env_kwargs=_env_kwargs(args.env_kwargs),
        workers=args.workers,
        segments=SEGMENTS if args.segments is None else args.segments,
        stds=STDS if args.stds is None else args.stds,
    )
    print((out / "calibration.md").read_text(), end="")
    print(f"written: {out / 'calibration.json'}  {out / 'calibrated_task.yaml'}  {out / 'calibration.md'}")
    log.info("calibration took %.1f s to fit", summary["fit_seconds"])


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


def cmd_envs(args: argparse.Namespace) -> None:
    from simreal.simulation.listing import describe_task
    from simreal.simulation.registry import register_task
    from simreal.simulation.tasks import packaged_tasks

    keys = [args.task] if args.task else list(packaged_tasks())
    for key in keys:
        print(describe_task(register_task(key, Path.cwd())), end="")


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
