"""`simreal panel`: an experiment's recipe on a panel of random targets drawn from its task.

The targets (`simreal.simulation.panel.draw_panel`) are written as a task file, `panel_task.yaml` - the
experiment's task with the panel as its targets - so they can be listed, reused and shared. The recipe
(the experiment's algorithm, pretraining, fine-tuning and budgets; no reference stage and no nominal
baseline) then runs on every target: pretraining once, in the first target's run, and each other target's
run starting from those same pretrained policies; zero-shot, fine-tune and scratch per target and seed,
every stage on the engine like any run (resumable: run the same command again). The summary
(`simreal.analysis.panel`) is `panel.json`, `panel.md` and `panel.png`.
"""

from __future__ import annotations

import logging
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


def run_panel(
    cfg: ExperimentConfig, n: int, seed: int, beyond: float, out: Path | None = None
) -> dict[str, Any]:
    """Draw the panel, write its task file, run the recipe on every target, write and return the summary."""
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
    task_file = out / "panel_task.yaml"
    task_data = cfg.task.model_dump(mode="json")
    task_data.update(name=f"{cfg.task.name}Panel{seed}", targets={name: t for name, (t, _) in panel.items()})
    text = yaml.safe_dump(task_data, sort_keys=False)
    if task_file.is_file() and task_file.read_text() != text:
        raise ConfigError(
            f"{out}: holds another panel (allowed: another --out, or the same arguments to resume it)"
        )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(text, task_file)
    runs = out / "runs"
    base = yaml.safe_load(dump_config(cfg))
    targets = []
    first: Path | None = None
    for name, (_, shifts) in panel.items():
        data = {**base, **RECIPE, "experiment": name, "target": name, "output_dir": str(runs)}
        data.update(task=str(task_file), pretrain={**base["pretrain"], "nominal_baseline": False})
        where = f"{task_file} ({name})"
        target_cfg = parse(ExperimentConfig, data, where, {"base_dir": out, "source": str(task_file)})
        run_dir = runs / name
        for stage in SHARED:
            if first is not None and (first / stage).is_dir() and not (run_dir / stage).exists():
                run_dir.mkdir(parents=True, exist_ok=True)  # the same pretrained policies for every target
                (run_dir / stage).symlink_to(first / stage, target_is_directory=True)
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
