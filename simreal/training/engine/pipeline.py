"""The whole experiment: every declared stage of every seed, on local processes or Ray tasks.

`run` takes the stage graph the methods declare (`method.plan`) and runs it per seed: in one process in
dependency order, or as jobs - every stage that waits for nothing is queued at once, each other stage as
soon as the stages it comes after have finished for its seed. On an exclusive target (a robot) at most
one target stage runs at a time; the others wait their turn while source training goes on beside it.
Stages are skipped when their outputs exist, so `run` also continues an interrupted run. The report is
the caller's (`simreal.analysis.report.write_report`; `simreal.run` and the CLI call it).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path
from typing import Any

from tqdm import tqdm

from simreal.config import ExperimentConfig, dump_config
from simreal.training.engine.artifacts import atomic_write_text
from simreal.training.engine.context import Context
from simreal.training.engine.executors import Submit, executor
from simreal.training.engine.method import Plan, Stage, declared_variants, plan

log = logging.getLogger("simreal")

VARIANTS_FILE = "variants.json"
"""The run's variants as its methods declared them (names, labels, comparisons): what the report reads."""


def prepare_run_dir(cfg: ExperimentConfig, resume: bool) -> Path:
    """Create (or, with resume, reuse) the run directory; never overwrites an existing run silently.

    Called after `preflight`, so a config mistake never creates it; a directory whose attempt stopped
    before any stage started is taken over by the next attempt."""
    run_dir = Path(cfg.output_dir) / cfg.experiment
    saved = run_dir / "config.yaml"
    if saved.exists() and not resume and _has_stage_outputs(run_dir):
        raise FileExistsError(
            f"{run_dir}: a run already exists "
            f"(use --resume {run_dir} to continue it, or another experiment name)"
        )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write_test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise PermissionError(f"{run_dir}: output directory is not writable ({err.strerror})") from None
    if not saved.exists() or not (resume or _has_stage_outputs(run_dir)):
        atomic_write_text(dump_config(cfg), saved)
    variants = [v.as_dict() for v in declared_variants(cfg)]
    atomic_write_text(json.dumps(variants, indent=1), run_dir / VARIANTS_FILE)
    return run_dir


def _has_stage_outputs(run_dir: Path) -> bool:
    """Whether any stage of the run in `run_dir` has started (an attempt that failed before any stage
    started leaves nothing that a rerun could lose)."""
    return any(p.is_dir() and any(p.iterdir()) for p in run_dir.iterdir() if p.is_dir())


def run_seed(ctx: Context, seed: int, stages: Plan | None = None) -> None:
    """Every stage of one seed in this process, each after the stages it needs."""
    results: dict[str, Any] = {}
    for stage in (stages or plan(ctx.cfg)).stages:
        results[stage.name] = stage.run(ctx, seed, *(results[a] for a in stage.after))


def worker_count(ctx: Context, stages: Plan | None = None) -> int:
    """Processes to run stages in: `workers`, or with 0 (auto) one per core, at most one per stage that
    can run at once."""
    wanted = ctx.cfg.workers or (os.cpu_count() or 1)
    width = (stages or plan(ctx.cfg)).width()
    return max(1, min(wanted, width * len(ctx.cfg.seeds)))


class _Jobs:
    """Stages as jobs: those that wait for nothing queued at once (`early` ones first), every other as
    soon as the stages it comes after have finished for its seed. On an exclusive target at most one
    target stage runs at a time; the others wait their turn, while source stages go on beside it."""

    def __init__(self, ctx: Context, submit: Submit, stages: Plan) -> None:
        self.ctx = dataclasses.replace(ctx, progress_bar=False)
        self.submit = submit
        self.plan = stages
        self.running: dict[Future[Any], tuple[Stage, int]] = {}
        self.waiting: deque[tuple[Stage, int]] = deque()
        self.results: dict[tuple[str, int], Any] = {}

    def _target_busy(self) -> bool:
        return any(stage.on_target for stage, _ in self.running.values())

    def launch(self, stage: Stage, seed: int) -> None:
        if self.ctx.cfg.exclusive and stage.on_target and self._target_busy():
            self.waiting.append((stage, seed))
            return
        args = [self.results[a, seed] for a in stage.after]
        self.running[self.submit(stage.run, self.ctx, seed, *args)] = (stage, seed)

    def run(self) -> None:
        seeds = self.ctx.cfg.seeds
        roots = [s for s in self.plan.stages if not s.after]
        for stage in sorted(roots, key=lambda s: not s.early):  # stable: declaration order otherwise
            for seed in seeds:
                self.launch(stage, seed)
        total = len(self.plan.stages) * len(seeds)
        bar = tqdm(total=total, desc="stages", unit="stage", disable=not self.ctx.progress_bar)
        while self.running:
            done, _ = wait(self.running, return_when=FIRST_COMPLETED)
            for future in done:
                stage, seed = self.running.pop(future)
                self.results[stage.name, seed] = future.result()  # re-raises a stage's error here
                bar.update(1)
                for nxt in self.plan.stages:
                    if stage.name in nxt.after and all((a, seed) in self.results for a in nxt.after):
                        self.launch(nxt, seed)
            while self.waiting and not self._target_busy():
                self.launch(*self.waiting.popleft())
        bar.close()


def run(ctx: Context, backend: str = "local", address: str | None = None) -> None:
    """Every stage of every seed (in parallel processes or Ray tasks when there is room)."""
    stages = plan(ctx.cfg)
    workers = worker_count(ctx, stages)
    if backend == "local" and workers == 1 and address is None:
        for seed in ctx.cfg.seeds:
            run_seed(ctx, seed, stages)
    else:
        log.info("running %d seeds' stages on %s with %d workers", len(ctx.cfg.seeds), backend, workers)
        with executor(backend, workers, address) as submit:
            _Jobs(ctx, submit, stages).run()
