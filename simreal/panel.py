"""`simreal panel`: an experiment's recipe on a panel of random targets drawn from its task.

The targets (`simreal.simulation.panel.draw_panel`) are written as a task file, `panel_task.yaml` - the
experiment's task with the panel as its targets - so they can be listed, reused and shared. The recipe
(the experiment's algorithm, pretraining, fine-tuning and budgets; no reference stage and no nominal
baseline) then runs on every target: pretraining once, in the first target's run, and each other target's
run starting from those same pretrained policies; zero-shot, fine-tune and scratch per target and seed,
every stage on the engine like any run (resumable: run the same command again). `reuse`: another panel
of the same targets whose recipe differs only in how it fine-tunes lends its pretrained policies, zero-shot
and scratch stages (linked, not rerun), so fine-tuning settings are compared on one panel at the cost of the
fine-tuning alone. The summary (`simreal.analysis.panel`) is `panel.json`, `panel.md` and `panel.png`.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import yaml

from simreal.analysis.panel import summarize, write_panel
from simreal.api import run as run_experiment
from simreal.config import ExperimentConfig, dump_config, load_config
from simreal.schema import ConfigError, parse
from simreal.simulation.panel import draw_panel
from simreal.simulation.tasks import load_task
from simreal.training.engine.artifacts import atomic_write_text

log = logging.getLogger("simreal")

SHARED = ("pretrain_randomized", "pretrain_meta")
"""Stages that do not depend on the target: run in the first target's run, linked into the others."""
REUSED = (*SHARED, "zeroshot_randomized", "scratch")
"""What `reuse` links from another panel: the stages that fine-tuning settings do not touch."""
SCRATCH_READS = ("timesteps", "n_envs", "learning_starts")
"""The `finetune` keys the scratch stage reads (its budget and target envs); the others only fine-tune."""
CURVE_ONLY = ("every_steps", "episodes")
"""`evaluation` keys that decide only the learning curves (and what fine-tuning's selection sees), not a
linked stage's final return - while evaluations are not counted in the budget."""
IGNORED = ("experiment", "output_dir", "workers")
"""Run settings that do not change any stage's result."""
RECIPE = {"reference": False, "scratch": True}
"""What every target's run sets over the experiment: scratch on, no reference (the panel compares the
recipe's variants with each other, on many targets, not against a long reference on each)."""


def recipe(source: str, overrides: list[str]) -> ExperimentConfig:
    """The experiment whose recipe the panel runs: an experiment file, or a task (a packaged key or a task
    file) run with the packaged quickstart's recipe."""
    path = Path(source)
    data: Any = yaml.safe_load(path.read_text()) if path.is_file() else None
    if isinstance(data, dict) and "experiment" in data:
        return load_config(path, overrides)
    task = load_task(source, Path.cwd(), where=source)
    cfg = load_config(None, overrides)
    first = next(iter(task.targets), None)
    if first is None:
        raise ConfigError(
            f"{source}: the task defines no targets (allowed: a task with one, or an experiment)"
        )
    return cfg.model_copy(update={"task": task, "target": first, "experiment": task.name.lower()})


def _lent(doc: dict[str, Any]) -> dict[str, Any]:
    """The part of a run's config that the stages `reuse` links depend on. The learning curve's cadence
    and episodes do not change what zero-shot and scratch end at while evaluations are outside the budget
    (they act deterministically on envs of their own), so panels that differ in how often or how long
    fine-tuning's selection evaluates can share them."""
    kept = {k: v for k, v in doc.items() if k not in IGNORED}
    kept["finetune"] = {k: v for k, v in doc["finetune"].items() if k in SCRATCH_READS}
    evaluation = doc["evaluation"]
    if not evaluation.get("count_in_budget"):
        kept["evaluation"] = {k: v for k, v in evaluation.items() if k not in CURVE_ONLY}
    return kept


def _first_difference(a: Any, b: Any, where: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in [*a, *(k for k in b if k not in a)]:
            found = _first_difference(a.get(key), b.get(key), f"{where}.{key}" if where else key)
            if found:
                return found
        return None
    return where if a != b else None


def _check_reuse(reuse: Path, text: str, cfgs: dict[str, ExperimentConfig]) -> None:
    """`reuse` must hold these targets, run (at least in part) with a recipe that differs only in how it
    fine-tunes: one line naming what differs otherwise, before anything is written."""
    task_file = reuse / "panel_task.yaml"
    if not task_file.is_file():
        raise ConfigError(f"--reuse {reuse}: no panel_task.yaml there (allowed: the --out of another panel)")
    if task_file.read_text() != text:
        raise ConfigError(
            f"--reuse {reuse}: its panel draws other targets (allowed: a panel of the same task, --targets, "
            "--seed and --beyond)"
        )
    for name, target_cfg in cfgs.items():
        theirs = reuse / "runs" / name / "config.yaml"
        if not theirs.is_file():
            continue  # not reached there: run here
        try:  # read as a config, so keys added since it ran take their defaults
            lent = yaml.safe_load(dump_config(load_config(theirs)))
        except ConfigError as err:
            raise ConfigError(f"--reuse {reuse}: {err}") from None
        key = _first_difference(_lent(yaml.safe_load(dump_config(target_cfg))), _lent(lent))
        if key:
            raise ConfigError(
                f"--reuse {reuse}: its recipe differs in {key} (allowed: a panel that differs only in the "
                f"finetune keys other than {', '.join(SCRATCH_READS)}, and in evaluation."
                f"{' and '.join(CURVE_ONLY)} while evaluation.count_in_budget is false)"
            )


def _finished(stage: Path, seeds: list[int]) -> bool:
    """Every seed of the stage done: its policy written (pretraining) or its final evaluation."""
    marker = "policy.pt" if stage.name in SHARED else "final.json"
    return all((stage / f"seed{s}" / marker).is_file() for s in seeds)


def _link(run_dir: Path, stage: str, source: Path) -> None:
    """`stage` of `run_dir` as a link to a stage elsewhere, unless it already has one."""
    if source.is_dir() and not (run_dir / stage).exists() and not (run_dir / stage).is_symlink():
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / stage).symlink_to(source.resolve(), target_is_directory=True)


def run_panel(
    cfg: ExperimentConfig,
    n: int,
    seed: int,
    beyond: float,
    out: Path | None = None,
    reuse: Path | None = None,
) -> dict[str, Any]:
    """Draw the panel, write its task file, run the recipe on every target (`reuse`: linking from another
    panel of the same targets what fine-tuning does not touch), write and return the summary."""
    if n < 1:
        raise ConfigError(f"--targets: must be >= 1, got {n}")
    if beyond < 1:
        raise ConfigError(f"--beyond: a factor >= 1 (1: never beyond the pretraining ranges), got {beyond:g}")
    if cfg.exclusive:
        raise ConfigError(
            f"target {cfg.target}: exclusive (hardware) - a panel draws simulated targets from the task and "
            "runs scratch on each (allowed: an experiment whose target is simulated)"
        )
    panel = draw_panel(cfg.task, n, seed, beyond)
    out = out or Path(cfg.output_dir) / f"{cfg.experiment}_panel_seed{seed}"
    out = out.resolve()
    reuse = reuse.resolve() if reuse is not None else None
    task_file = out / "panel_task.yaml"
    task_data = cfg.task.model_dump(mode="json")
    task_data.update(name=f"{cfg.task.name}Panel{seed}", targets={name: t for name, (t, _) in panel.items()})
    text = yaml.safe_dump(task_data, sort_keys=False)
    if task_file.is_file() and task_file.read_text() != text:
        raise ConfigError(
            f"{out}: holds another panel (allowed: another --out, or the same arguments to resume it)"
        )
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(text, task_file)
    runs = out / "runs"
    base = yaml.safe_load(dump_config(cfg))
    cfgs = {}
    try:
        for name in panel:
            data = {**base, **RECIPE, "experiment": name, "target": name, "output_dir": str(runs)}
            data.update(task=str(task_file), pretrain={**base["pretrain"], "nominal_baseline": False})
            where = f"{task_file} ({name})"
            cfgs[name] = parse(ExperimentConfig, data, where, {"base_dir": out, "source": str(task_file)})
        if reuse is not None:
            _check_reuse(reuse, text, cfgs)
    except ConfigError:
        if created:  # refused before anything ran: leave no half-made panel behind
            shutil.rmtree(out)
        raise
    targets = []
    first: Path | None = None
    for name, (_, shifts) in panel.items():
        target_cfg, run_dir = cfgs[name], runs / name
        if reuse is not None and not (run_dir / "config.yaml").is_file():
            for stage in REUSED:  # finished there: an unfinished one is run here, not resumed there
                lent = reuse / "runs" / name / stage
                if _finished(lent, target_cfg.seeds):
                    _link(run_dir, stage, lent)
        for stage in SHARED:  # the same pretrained policies for every target
            if first is not None:
                _link(run_dir, stage, first / stage)
        log.info("panel %s: %s", name, "; ".join(f"{s.axis} {s.value:.3g} ({s.where})" for s in shifts))
        resume = (run_dir / "config.yaml").is_file()
        doc = run_experiment(resume=run_dir) if resume else run_experiment(target_cfg)
        first = first or run_dir
        returns = {v: row["per_seed_final_return"] for v, row in doc["variants"].items()}
        targets.append({"name": name, "shifts": [s.as_dict() for s in shifts], "returns": returns})
    summary = summarize(targets)
    summary.update(
        task=cfg.task.name, recipe=cfg.experiment, seed=seed, beyond=beyond, task_file=str(task_file)
    )
    write_panel(out, summary)
    return summary
