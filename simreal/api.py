"""Run an experiment from Python: what `simreal run` does, returning the result document.

Example:
    >>> import simreal
    >>> doc = simreal.run("configs/quickstart.yaml", overrides=["seeds=[0]"])  # doctest: +SKIP
    >>> doc["variants"]["finetune"]["final_return"]["mean"]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from simreal.analysis.report import write_report
from simreal.config import ExperimentConfig, load_config
from simreal.schema import ConfigError
from simreal.training.engine.context import Context
from simreal.training.engine.device import resolve_device
from simreal.training.engine.pipeline import prepare_run_dir
from simreal.training.engine.pipeline import run as run_stages
from simreal.training.engine.preflight import preflight

log = logging.getLogger("simreal")


def resume_config(run_dir: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """The saved config of the run in `run_dir`, placed where the run directory is now. Overrides that
    change the experiment are refused (the saved config is what the run's results mean); `device` and
    `workers` only decide where and how wide it runs."""
    changing = [o for o in overrides if o.split("=", 1)[0].strip() not in ("device", "workers")]
    if changing:
        raise ConfigError(
            f"--resume: {changing[0]} would change the saved experiment of {run_dir} (allowed with "
            "--resume: --device, --workers, --backend; to change a setting, start a new experiment)"
        )
    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.yaml", list(overrides))
    if Path(cfg.output_dir) / cfg.experiment != run_dir:
        cfg = cfg.model_copy(update={"output_dir": str(run_dir.parent), "experiment": run_dir.name})
    return cfg


def start(cfg: ExperimentConfig, resume: bool = False, progress: bool = False) -> Context:
    """Check everything the run will build (envs, spaces, the model), then create its directory."""
    device = resolve_device(cfg.device)
    preflight(cfg, device)
    run_dir = prepare_run_dir(cfg, resume)
    log.info("run directory: %s (device %s)", run_dir, device)
    return Context(cfg, run_dir, device, progress_bar=progress)


def run(
    config: str | Path | ExperimentConfig | None = None,
    overrides: Sequence[str] = (),
    resume: str | Path | None = None,
    backend: str = "local",
    address: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run every stage of an experiment (the packaged quickstart when `config` is None) and write its
    report; returns the result document (`report.json`). `resume`: a run directory to continue."""
    if resume is not None:
        if config is not None:
            raise ConfigError("resume: give the run directory only, not a config (its config.yaml is used)")
        cfg = resume_config(resume, overrides)
    elif isinstance(config, ExperimentConfig):
        if overrides:
            raise ConfigError("overrides: apply them when loading (load_config(path, overrides))")
        cfg = config
    else:
        cfg = load_config(config, list(overrides))
    ctx = start(cfg, resume=resume is not None, progress=progress)
    run_stages(ctx, backend=backend, address=address)
    return write_report(ctx.run_dir)
