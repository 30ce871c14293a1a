"""Sweep fine-tuning settings over a finished run's pretrained policies with Optuna, and say what mattered.

`simreal sweep runs/NAME --space finetune.learning_rate=log:1e-5:1e-3 --space finetune.freeze_layers=int:0:2
--trials 20` fine-tunes the run's randomized pretrained policy (every seed) once per trial, with the
trial's values applied to the run's config through the same schema (so a bad value is a clear error),
and scores a trial by the mean over seeds of the final target return. Trials are written under
`runs/NAME/sweep/trial<k>/`; `sweep.json` and `sweep.md` hold every trial, the best setting and the
sensitivity (Optuna's fANOVA parameter importances). Optuna is an optional extra
(`pip install 'simreal[sweep]'`).

Space syntax, one `key.path=kind:args` per dimension: `log:LOW:HIGH` (log-uniform float),
`float:LOW:HIGH`, `int:LOW:HIGH` (inclusive), `choice:A,B,C` (YAML scalars).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from simreal.artifacts import atomic_write_text
from simreal.config import ExperimentConfig, apply_overrides, load_config
from simreal.config_base import ConfigError, load_yaml, parse
from simreal.pipeline import Context, finetune

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


def sweep(run_dir: Path, dims: list[Dim], trials: int, device: Any, seed: int = 0) -> dict[str, Any]:
    """Run `trials` fine-tuning trials over `dims`; returns (and writes) the sweep summary."""
    try:
        import optuna
    except ImportError:
        raise ConfigError("sweep: Optuna is not installed (pip install 'simreal[sweep]')") from None
    config_path = run_dir / "config.yaml"
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

    def objective(trial: Any) -> float:
        values = {dim.path: dim.suggest(trial) for dim in dims}
        cfg = _trial_config(base, values, str(config_path))
        ctx = Context(cfg, run_dir / "sweep" / f"trial{trial.number}", device, progress_bar=False)
        returns = []
        for s, source in sources.items():
            finetune(ctx, source, s)
            returns.append(
                json.loads((ctx.stage_dir("finetune", s) / "final.json").read_text())["mean_return"]
            )
        return float(sum(returns) / len(returns))

    study.optimize(objective, n_trials=trials)
    try:
        importance: dict[str, Any] = dict(optuna.importance.get_param_importances(study))
    except (RuntimeError, ValueError, ZeroDivisionError) as err:  # too few distinct trials to tell
        importance = {"note": str(err)}
    summary = {
        "run_dir": str(run_dir),
        "objective": "mean over seeds of the final target return after fine-tuning",
        "seeds": list(sources),
        "best_value": study.best_value,
        "best_params": study.best_params,
        "importance": importance,
        "trials": [{"number": t.number, "value": t.value, "params": t.params} for t in study.trials],
    }
    atomic_write_text(json.dumps(summary, indent=1), run_dir / "sweep" / "sweep.json")
    atomic_write_text(_markdown(summary, dims), run_dir / "sweep" / "sweep.md")
    return summary


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
        "Sensitivity (fANOVA importance):",
    ]
    lines += [
        f"- {k}: {v:.2f}" if isinstance(v, float) else f"- {k}: {v}" for k, v in summary["importance"].items()
    ]
    return "\n".join(lines) + "\n"
