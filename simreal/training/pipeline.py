"""The whole experiment: every stage of every seed, on local processes or Ray tasks, then the report.

`run` reads like the experiment: per seed, pretrain in the randomized sim (and a nominal baseline),
evaluate zero-shot on the target, fine-tune, train from scratch; then write the report. Stages run in
parallel when there is room (each seed's zero-shot and fine-tuning start as soon as its pretrained
policy exists) and are skipped when their outputs exist, so `run` also continues an interrupted run.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path
from typing import Any

from tqdm import tqdm

from simreal.config import ExperimentConfig, dump_config
from simreal.training.artifacts import atomic_write_text
from simreal.training.context import Context
from simreal.training.distill import distill_seed, distill_student, pretrain_teacher, transfer_student
from simreal.training.executors import Submit, executor
from simreal.training.stages import pretrain, zero_shot
from simreal.training.target import finetune, reference, scratch

log = logging.getLogger("simreal")


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
    return run_dir


def _has_stage_outputs(run_dir: Path) -> bool:
    """Whether any stage of the run in `run_dir` has started (an attempt that failed before any stage
    started leaves nothing that a rerun could lose)."""
    return any(p.is_dir() and any(p.iterdir()) for p in run_dir.iterdir() if p.is_dir())


def run_seed(ctx: Context, seed: int) -> None:
    """Every stage of one seed, in the order the YAML reads."""
    cfg = ctx.cfg
    source = pretrain(ctx, seed, randomized=True)
    zero_shot(ctx, source, seed, "zeroshot_randomized")
    if cfg.pretrain.nominal_baseline:
        nominal = pretrain(ctx, seed, randomized=False)
        zero_shot(ctx, nominal, seed, "zeroshot_nominal")
    finetune(ctx, source, seed)
    if cfg.run_scratch:
        scratch(ctx, seed)
    if cfg.reference_steps is not None:
        reference(ctx, seed)
    if cfg.distill is not None:
        distill_seed(ctx, seed)


def _transfer_from(ctx: Context, source: Path, seed: int) -> None:
    """What follows randomized pretraining: zero-shot on the target, then fine-tuning."""
    zero_shot(ctx, source, seed, "zeroshot_randomized")
    finetune(ctx, source, seed)


def worker_count(ctx: Context) -> int:
    """Processes to run stages in: `workers`, or with 0 (auto) one per core, at most one per stage."""
    wanted = ctx.cfg.workers or (os.cpu_count() or 1)
    per_seed = 3 + 2 * (ctx.cfg.distill is not None)  # stages that can run at once per seed
    return max(1, min(wanted, per_seed * len(ctx.cfg.seeds)))


TARGET_STAGES = frozenset({"reference", "scratch", "transfer", "zeroshot", "student_transfer"})
"""Job kinds that act on the target (the others train in simulation)."""


class _Jobs:
    """Stages as jobs: pretraining, the reference and scratch are queued at once, each seed's zero-shot
    and fine-tuning as soon as its pretrained policy exists. On an exclusive target (a robot) at most one
    target job runs at a time; the others wait their turn, while source pretraining goes on beside it."""

    def __init__(self, ctx: Context, submit: Submit) -> None:
        self.ctx = dataclasses.replace(ctx, progress_bar=False)
        self.submit = submit
        self.running: dict[Future[Any], tuple[str, int]] = {}
        self.waiting: deque[tuple[str, int, Callable[..., Any], tuple[Any, ...]]] = deque()

    def _target_busy(self) -> bool:
        return any(kind in TARGET_STAGES for kind, _ in self.running.values())

    def launch(self, kind: str, seed: int, fn: Callable[..., Any], *args: Any) -> None:
        if self.ctx.cfg.exclusive and kind in TARGET_STAGES and self._target_busy():
            self.waiting.append((kind, seed, fn, args))
            return
        self.running[self.submit(fn, self.ctx, *args)] = (kind, seed)

    def run(self) -> None:
        cfg = self.ctx.cfg
        for seed in cfg.seeds:
            self.launch("randomized", seed, pretrain, seed, True)
        for seed in cfg.seeds:
            if cfg.reference_steps is not None:  # the longest stages: queued early
                self.launch("reference", seed, reference, seed)
        for seed in cfg.seeds:
            if cfg.pretrain.nominal_baseline:
                self.launch("nominal", seed, pretrain, seed, False)
        for seed in cfg.seeds:
            if cfg.run_scratch:
                self.launch("scratch", seed, scratch, seed)
        for seed in cfg.seeds:
            if cfg.distill is not None:
                self.launch("teacher", seed, pretrain_teacher, seed)
        stages = len(cfg.seeds) * (2 + 2 * cfg.pretrain.nominal_baseline + cfg.run_scratch)
        stages += len(cfg.seeds) * ((cfg.reference_steps is not None) + 3 * (cfg.distill is not None))
        bar = tqdm(total=stages, desc="stages", unit="stage", disable=not self.ctx.progress_bar)
        while self.running:
            done, _ = wait(self.running, return_when=FIRST_COMPLETED)
            for future in done:
                kind, seed = self.running.pop(future)
                result = future.result()  # re-raises a stage's error here
                bar.update(1)
                if kind == "randomized":
                    self.launch("transfer", seed, _transfer_from, result, seed)
                elif kind == "nominal":
                    self.launch("zeroshot", seed, zero_shot, result, seed, "zeroshot_nominal")
                elif kind == "teacher":
                    self.launch("distill", seed, distill_student, result, seed)
                elif kind == "distill":
                    self.launch("student_transfer", seed, transfer_student, result, seed)
            while self.waiting and not self._target_busy():
                kind, seed, fn, args = self.waiting.popleft()
                self.launch(kind, seed, fn, *args)
        bar.close()


def run(ctx: Context, backend: str = "local", address: str | None = None) -> dict[str, Any]:
    """The whole experiment (stages in parallel processes or Ray tasks when there is room) and its report."""
    from simreal.analysis.report import write_report

    workers = worker_count(ctx)
    if backend == "local" and workers == 1 and address is None:
        for seed in ctx.cfg.seeds:
            run_seed(ctx, seed)
    else:
        log.info("running %d seeds' stages on %s with %d workers", len(ctx.cfg.seeds), backend, workers)
        with executor(backend, workers, address) as submit:
            _Jobs(ctx, submit).run()
    return write_report(ctx.run_dir)
