"""Sweep fine-tuning settings over a finished run's pretrained policies with Optuna, and say what mattered.

`simreal sweep runs/NAME --space finetune.learning_rate=log:1e-5:1e-3 --space finetune.freeze_layers=int:0:2
--trials 20` fine-tunes the run's randomized pretrained policy (every seed) once per trial, with the
trial's values applied to the run's config through the same schema (so a bad value is a clear error),
and scores a trial by the mean over seeds of the final target return. Trials are written under
`runs/NAME/sweep/trial<k>/` (`--name` picks another directory than `sweep`; an existing one is
refused); `sweep.json` and `sweep.md` hold every trial, the best setting and the sensitivity (Optuna's
parameter importances: PED-ANOVA, its default, no scikit-learn needed). `--workers N` keeps N trials
running at once (Optuna's ask/tell), each seed a job in a local process pool or, with `--backend ray
[--address]`, a Ray task on a local instance or a cluster. Optuna is an optional extra
(`pip install 'simreal[sweep]'`).

Space syntax, one `key.path=kind:args` per dimension: `log:LOW:HIGH` (log-uniform float),
`float:LOW:HIGH`, `int:LOW:HIGH` (inclusive), `choice:A,B,C` (YAML scalars).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from simreal.config import ExperimentConfig, apply_overrides, load_config
from simreal.schema import ConfigError, load_yaml, parse
from simreal.training.engine.artifacts import atomic_write_text
from simreal.training.engine.context import Context
from simreal.training.engine.executors import Submit, executor
from simreal.training.methods.finetune import finetune

KINDS = ("log", "float", "int", "choice")


@dataclass(frozen=True)
class Dim:
    """One searched config value."""

    path: str
    kind: str
    args: tuple[Any, ...]

    def suggest(self, trial: Any) -> Any:
        if self.kind == "log":
            return trial.suggest_float(self.path, *self.args, log=True)
        if self.kind == "float":
            return trial.suggest_float(self.path, *self.args)
        if self.kind == "int":
            return trial.suggest_int(self.path, *self.args)
        return trial.suggest_categorical(self.path, list(self.args))


def parse_space(items: list[str]) -> list[Dim]:
    """`key.path=kind:args` strings -> dimensions; a malformed one is a one-line ConfigError."""
    dims = []
    for item in items:
        path, _, spec = item.partition("=")
        kind, _, rest = spec.partition(":")
        if not path or kind not in KINDS or not rest:
            raise ConfigError(f"--space {item}: expected key.path=KIND:ARGS with KIND in {', '.join(KINDS)}")
        try:
            if kind == "choice":
                args: tuple[Any, ...] = tuple(yaml.safe_load(v) for v in rest.split(","))
            else:
                low, high = rest.split(":")
                cast = int if kind == "int" else float
                args = (cast(low), cast(high))
                if args[0] > args[1] or (kind == "log" and args[0] <= 0):
                    raise ValueError
        except ValueError:
            raise ConfigError(f"--space {item}: bad bounds for {kind} (need LOW:HIGH, LOW <= HIGH)") from None
        dims.append(Dim(path.strip(), kind, args))
    if not dims:
        raise ConfigError("--space: give at least one dimension to search")
    return dims


def _trial_config(base: dict[str, Any], values: dict[str, Any], source: str) -> ExperimentConfig:
    overrides = [f"{k}={json.dumps(v)}" for k, v in values.items()]
    return parse(ExperimentConfig, apply_overrides(base, overrides), f"{source} (sweep)")


def finetune_return(ctx: Context, source: Path, seed: int) -> float:
    """Fine-tune `source` on the target with `ctx`'s settings; its final mean target return."""
    finetune(ctx, source, seed)
    return float(json.loads((ctx.stage_dir("finetune", seed) / "final.json").read_text())["mean_return"])


def _parallel_trials(
    study: Any,
    trials: int,
    in_flight: int,
    trial_context: Callable[[Any], Context],
    sources: dict[int, Path],
    submit: Submit,
) -> None:
    """Keep `in_flight` trials running (each seed a job); a finished trial is told to the study at once,
    so the sampler's next suggestion already knows it. A failing job stops the sweep with its error."""
    running: dict[Future[float], Any] = {}
    returns: dict[int, list[float]] = {}  # open trials (asked, not yet told) -> their seeds' returns
    asked = 0
    while asked < trials or running:
        while asked < trials and len(returns) < in_flight:
            trial = study.ask()
            ctx = trial_context(trial)
            asked += 1
            returns[trial.number] = []
            for s, source in sources.items():
                running[submit(finetune_return, ctx, source, s)] = trial
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in done:
            trial = running.pop(future)
            returns[trial.number].append(future.result())
            if len(returns[trial.number]) == len(sources):
                study.tell(trial, sum(returns.pop(trial.number)) / len(sources))


def _in_process(fn: Callable[..., float], *args: Any) -> Future[float]:
    """A `Submit` that runs the job here and now (one trial at a time, in this process)."""
    future: Future[float] = Future()
    future.set_result(fn(*args))
    return future


def sweep(
    run_dir: Path,
    dims: list[Dim],
    trials: int,
    device: Any,
    seed: int = 0,
    name: str = "sweep",
    backend: str = "local",
    workers: int = 1,
    address: str | None = None,
) -> dict[str, Any]:
    """Run `trials` fine-tuning trials over `dims`; returns (and writes) the sweep summary.

    With one local worker the trials run one after another in this process; otherwise up to `workers`
    trials run at once, each seed's fine-tuning a job in a local process pool or a Ray task
    (`backend="ray"`, on the cluster at `address` or a local instance)."""
    try:
        import optuna
    except ImportError:
        raise ConfigError("sweep: Optuna is not installed (pip install 'simreal[sweep]')") from None
    config_path = run_dir / "config.yaml"
    out = run_dir / name
    if not name or Path(name).name != name:
        raise ConfigError(f"--name {name!r}: must be a plain directory name (no path separators)")
    if out.exists():
        raise ConfigError(f"sweep: {out} already exists; pass --name to keep both sweeps")
    base_cfg = load_config(config_path)
    base = load_yaml(config_path)
    sources = {s: run_dir / "pretrain_randomized" / f"seed{s}" / "policy.pt" for s in base_cfg.seeds}
    missing = [str(p) for p in sources.values() if not p.exists()]
    if missing:
        raise ConfigError(
            f"sweep: {run_dir} has no pretrained policy at {missing[0]} (run `simreal run` first)"
        )
    for dim in dims:  # every value the space can produce must pass the schema, before any training
        for value in dim.args if dim.kind == "choice" else dim.args[:2]:
            _trial_config(base, {dim.path: value}, str(config_path))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))

    def trial_context(trial: Any) -> Context:
        cfg = _trial_config(base, {dim.path: dim.suggest(trial) for dim in dims}, str(config_path))
        return Context(cfg, out / f"trial{trial.number}", device, progress_bar=False)

    if backend == "local" and workers <= 1 and address is None:
        _parallel_trials(study, trials, 1, trial_context, sources, _in_process)
    else:
        with executor(backend, max(1, workers), address) as submit:
            _parallel_trials(study, trials, max(1, workers), trial_context, sources, submit)
    try:
        importance: dict[str, Any] = dict(optuna.importance.get_param_importances(study))
    except (RuntimeError, ValueError, ZeroDivisionError) as err:  # too few distinct trials to tell
        importance = {"note": str(err)}
    finished = sum(t.value is not None for t in study.trials)
    caveats = []
    if finished < MIN_TRIALS:
        caveats.append(
            f"importances from {finished} trials: too few to rank settings (at least {MIN_TRIALS} wanted)"
        )
    if len(sources) < 3:
        caveats.append(f"each trial's value rests on {len(sources)} seed(s): differences may be noise")
    summary = {
        "run_dir": str(run_dir),
        "objective": "mean over seeds of the final target return after fine-tuning",
        "caveats": caveats,
        "seeds": list(sources),
        "best_value": study.best_value,
        "best_params": study.best_params,
        "importance": importance,
        "trials": [{"number": t.number, "value": t.value, "params": t.params} for t in study.trials],
    }
    atomic_write_text(json.dumps(summary, indent=1), out / "sweep.json")
    atomic_write_text(_markdown(summary, dims), out / "sweep.md")
    return summary


MIN_TRIALS = 10
"""Fewer finished trials than this: the sweep says its importances cannot rank the settings."""


def _markdown(summary: dict[str, Any], dims: list[Dim]) -> str:
    names = [d.path for d in dims]
    lines = [
        f"# Fine-tuning sweep of {summary['run_dir']}",
        "",
        f"Objective: {summary['objective']}.",
        "",
        "| trial | " + " | ".join(names) + " | final return |",
        "|---" * (len(names) + 2) + "|",
    ]
    for t in sorted(
        summary["trials"], key=lambda t: -(t["value"] if t["value"] is not None else float("-inf"))
    ):
        cells = " | ".join(f"{t['params'].get(n)}" for n in names)
        lines.append(f"| {t['number']} | {cells} | {t['value']:.1f} |")
    lines += [
        "",
        f"Best: {summary['best_params']} -> {summary['best_value']:.1f}",
        "",
        "Sensitivity (Optuna parameter importance, PED-ANOVA):",
    ]
    lines += [
        f"- {k}: {v:.2f}" if isinstance(v, float) else f"- {k}: {v}" for k, v in summary["importance"].items()
    ]
    lines += [f"\nCaution: {c}." for c in summary["caveats"]]
    return "\n".join(lines) + "\n"
