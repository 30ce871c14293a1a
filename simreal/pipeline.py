"""The transfer experiment, stage by stage: pretrain, zero-shot, fine-tune, scratch, evaluate, report.

Each stage is a plain function over the config and artifacts on disk, and is skipped when its
outputs exist, so `run(..., resume=True)` continues an interrupted experiment where it stopped.

Run directory layout::

    runs/<experiment>/config.yaml                      resolved config
    runs/<experiment>/<variant>/seed<N>/               TensorBoard events, checkpoint.pt, policy.pt,
                                                       curve.json, final.json
    runs/<experiment>/report.json, report.md, curves.png
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import os
import sys
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from stable_baselines3.common.base_class import BaseAlgorithm

import envs
from agents.algorithms import make_model
from simreal import transfer as tr
from simreal.artifacts import atomic_write_text, check_spaces, load_policy, load_torch_state, save_policy
from simreal.config import AlgoConfig, ExperimentConfig, dump_config
from simreal.evaluation import EvalResult, evaluate
from simreal.observation import observation_wrapper
from simreal.schedules import WarmupDecaySchedule
from simreal.training import EvalSchedule, make_vec, obs_rms_of, stage_logger, train_stage

log = logging.getLogger("simreal")

POLICY = "policy.pt"
FINAL = "final.json"
VARIANTS = ("finetune", "scratch", "zeroshot_randomized", "zeroshot_nominal")


@dataclass(frozen=True)
class Context:
    """Resolved, run-wide settings shared by every stage."""

    cfg: ExperimentConfig
    run_dir: Path
    device: torch.device
    progress_bar: bool = True

    def stage_dir(self, variant: str, seed: int) -> Path:
        return self.run_dir / variant / f"seed{seed}"

    @property
    def task(self) -> envs.Task:
        return envs.TASKS[self.cfg.task]

    @property
    def target_id(self) -> str:
        return self.task.target_id(self.cfg.target)

    def eval_seed(self, seed: int, final: bool = False) -> int:
        return (200_000 if final else 100_000) + 1_000 * seed

    @property
    def wrapper(self) -> Callable[[gym.Env[Any, Any]], gym.Env[Any, Any]] | None:
        """What the policy observes beyond the env (e.g. its recent actions), from the config."""
        return observation_wrapper(self.cfg.observation)

    def make_env(self, env_id: str) -> gym.Env[Any, Any]:
        env = gym.make(env_id)
        return self.wrapper(env) if self.wrapper else env

    def make_target(self) -> gym.Env[Any, Any]:
        return self.make_env(self.target_id)


def build_model(algo: AlgoConfig, env: Any, lr: Any, device: torch.device, seed: int) -> BaseAlgorithm:
    return make_model(algo.name, algo.policy, env, lr, algo.policy_kwargs(), dict(algo.kwargs), device, seed)


def _meta(ctx: Context, variant: str, seed: int, env_id: str) -> dict[str, Any]:
    return {
        "variant": variant,
        "seed": seed,
        "env_id": env_id,
        "task": ctx.cfg.task,
        "algo": ctx.cfg.algo.model_dump(mode="json"),
        "observation": ctx.cfg.observation.model_dump(mode="json"),
    }


def pretrain(ctx: Context, seed: int, randomized: bool) -> Path:
    """Train on the randomized (or nominal) source sim; returns the policy artifact path."""
    variant = "pretrain_randomized" if randomized else "pretrain_nominal"
    out = ctx.stage_dir(variant, seed)
    if (out / POLICY).exists():
        return out / POLICY
    env_id = ctx.task.randomized_id if randomized else ctx.task.nominal_id
    algo = ctx.cfg.algo
    venv = make_vec(env_id, algo.n_envs, seed, algo.normalize_obs, None, wrapper=ctx.wrapper)
    model = build_model(algo, venv, algo.pretrain_lr, ctx.device, seed)
    log.info(
        "pretrain %s seed %d on %s for %d steps -> %s", variant, seed, env_id, ctx.cfg.pretrain.timesteps, out
    )
    train_stage(
        model,
        ctx.cfg.pretrain.timesteps,
        out,
        None,
        ctx.cfg.checkpoint_every_steps,
        ctx.progress_bar,
        log_dynamics=randomized,
    )
    save_policy(model, obs_rms_of(venv), _meta(ctx, variant, seed, env_id), out / POLICY)
    venv.close()
    return out / POLICY


def load_model(
    path: Path, env: Any, device: torch.device, seed: int, lr: Any = 0.0
) -> tuple[BaseAlgorithm, Any]:
    """Rebuild a saved policy on `env` (spaces checked); returns (model, its normalization statistics)."""
    art = load_policy(path, device)
    check_spaces(art.meta, env.observation_space, env.action_space)
    algo = AlgoConfig.model_validate(art.meta["algo"])
    model = build_model(algo, env, lr if lr else algo.pretrain_lr, device, seed)
    load_torch_state(model, art.states, art.tensors, include_optimizers=False)
    return model, art.obs_rms


def _write_final(out: Path, result: EvalResult) -> None:
    data = {
        "returns": result.returns.tolist(),
        "lengths": result.lengths.tolist(),
        "successes": [None if s != s else s for s in result.successes.tolist()],
        "mean_return": result.mean_return,
        "success_rate": result.success_rate,
    }
    atomic_write_text(json.dumps(data, indent=1), out / FINAL)


def zero_shot(ctx: Context, policy: Path, seed: int, variant: str) -> None:
    """Evaluate a pretrained policy on the target without any target training (a flat curve)."""
    out = ctx.stage_dir(variant, seed)
    if (out / FINAL).exists():
        return
    dummy = ctx.make_target()
    model, rms = load_model(policy, dummy, ctx.device, seed)
    dummy.close()
    result = evaluate(
        model, ctx.make_target, ctx.cfg.evaluation.final_episodes, ctx.eval_seed(seed, True), rms
    )
    logger = stage_logger(out, None)
    curve = []
    for step in (0, ctx.cfg.finetune.timesteps):
        logger.record("target/mean_return", result.mean_return)
        if result.success_rate is not None:
            logger.record("target/success_rate", result.success_rate)
        logger.dump(step)
        curve.append(
            {
                "step": step,
                "mean_return": result.mean_return,
                "std_return": result.std_return,
                "success_rate": result.success_rate,
            }
        )
    logger.close()
    atomic_write_text(json.dumps(curve, indent=1), out / "curve.json")
    _write_final(out, result)


def _target_training(ctx: Context, seed: int, variant: str, source: Path | None) -> None:
    """Fine-tune `source` (or train from scratch when None) on the target for the fine-tune budget."""
    out = ctx.stage_dir(variant, seed)
    if (out / FINAL).exists():
        return
    cfg, ft = ctx.cfg, ctx.cfg.finetune
    algo = cfg.algo
    if source is None:
        venv = make_vec(ctx.target_id, algo.n_envs, seed, algo.normalize_obs, None, wrapper=ctx.wrapper)
        model = build_model(algo, venv, algo.pretrain_lr, ctx.device, seed)
    else:
        art = load_policy(source, ctx.device)
        rms = art.obs_rms
        keep = ft.obs_norm == "keep"
        venv = make_vec(
            ctx.target_id,
            algo.n_envs,
            seed,
            algo.normalize_obs,
            None if ft.obs_norm == "reset" else rms,
            update_stats=not keep,
            wrapper=ctx.wrapper,
        )
        check_spaces(art.meta, venv.observation_space, venv.action_space)
        schedule = WarmupDecaySchedule(cfg.finetune_lr, ft.lr_schedule, ft.lr_warmup_fraction)
        model = build_model(algo, venv, schedule, ctx.device, seed)
        load_torch_state(model, art.states, art.tensors, include_optimizers=False)
        if ft.reinit_heads:
            tr.reinit_heads(model, seed)
        if ft.freeze_features:
            tr.freeze_features(model)
        tr.freeze_layers(model, ft.freeze_layers)
        if ft.reset_entropy:
            tr.reset_entropy(model)
        tr.rebuild_optimizers(model)
        summary = tr.summarize(model)
        log.info(
            "transfer seed %d: %d of %d parameters trainable, lr %.2e",
            seed,
            summary.trainable_params,
            summary.total_params,
            cfg.finetune_lr,
        )
    schedule_eval = EvalSchedule(
        ctx.make_target, cfg.evaluation.every_steps, cfg.evaluation.episodes, ctx.eval_seed(seed)
    )
    log.info("%s seed %d on %s for %d target steps -> %s", variant, seed, ctx.target_id, ft.timesteps, out)
    train_stage(model, ft.timesteps, out, schedule_eval, cfg.checkpoint_every_steps, ctx.progress_bar)
    rms = obs_rms_of(venv)
    save_policy(model, rms, _meta(ctx, variant, seed, ctx.target_id), out / POLICY)
    venv.close()
    result = evaluate(model, ctx.make_target, cfg.evaluation.final_episodes, ctx.eval_seed(seed, True), rms)
    _write_final(out, result)


def finetune(ctx: Context, source: Path, seed: int) -> None:
    _target_training(ctx, seed, "finetune", source)


def scratch(ctx: Context, seed: int) -> None:
    _target_training(ctx, seed, "scratch", None)


def prepare_run_dir(cfg: ExperimentConfig, resume: bool) -> Path:
    """Create (or, with resume, reuse) the run directory; never overwrites an existing run silently."""
    run_dir = Path(cfg.output_dir) / cfg.experiment
    saved = run_dir / "config.yaml"
    if saved.exists() and not resume:
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
    if not saved.exists():
        atomic_write_text(dump_config(cfg), saved)
    return run_dir


def run_seed(ctx: Context, seed: int) -> None:
    """Every stage of one seed, in the order the YAML reads."""
    cfg = ctx.cfg
    source = pretrain(ctx, seed, randomized=True)
    zero_shot(ctx, source, seed, "zeroshot_randomized")
    if cfg.pretrain.nominal_baseline:
        nominal = pretrain(ctx, seed, randomized=False)
        zero_shot(ctx, nominal, seed, "zeroshot_nominal")
    finetune(ctx, source, seed)
    if cfg.scratch:
        scratch(ctx, seed)


def _transfer_from(ctx: Context, source: Path, seed: int) -> None:
    """What follows randomized pretraining: zero-shot on the target, then fine-tuning."""
    zero_shot(ctx, source, seed, "zeroshot_randomized")
    finetune(ctx, source, seed)


def _init_worker() -> None:
    """Worker set-up: logging, one torch thread, and death with the parent (no orphan writing files)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s [%(process)d] %(message)s", datefmt="%H:%M:%S"
    )
    log.setLevel(logging.INFO)
    torch.set_num_threads(1)


def worker_count(ctx: Context) -> int:
    """Processes to run stages in: `workers`, or with 0 (auto) one per core, at most one per stage."""
    wanted = ctx.cfg.workers or (os.cpu_count() or 1)
    return max(1, min(wanted, 3 * len(ctx.cfg.seeds)))


def _run_parallel(ctx: Context, workers: int) -> None:
    """Stages as jobs in `workers` processes: pretraining and scratch start at once, each seed's
    zero-shot and fine-tuning start as soon as its pretrained policy exists."""
    quiet = dataclasses.replace(ctx, progress_bar=False)
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=spawn, initializer=_init_worker) as pool:
        running: dict[Future[Any], tuple[str, int]] = {}
        for seed in ctx.cfg.seeds:
            running[pool.submit(pretrain, quiet, seed, True)] = ("randomized", seed)
        for seed in ctx.cfg.seeds:
            if ctx.cfg.pretrain.nominal_baseline:
                running[pool.submit(pretrain, quiet, seed, False)] = ("nominal", seed)
        for seed in ctx.cfg.seeds:
            if ctx.cfg.scratch:
                running[pool.submit(scratch, quiet, seed)] = ("scratch", seed)
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                kind, seed = running.pop(future)
                result = future.result()  # re-raises a stage's error here
                if kind == "randomized":
                    running[pool.submit(_transfer_from, quiet, result, seed)] = ("transfer", seed)
                elif kind == "nominal":
                    job = pool.submit(zero_shot, quiet, result, seed, "zeroshot_nominal")
                    running[job] = ("zeroshot", seed)


def run(ctx: Context) -> dict[str, Any]:
    """The whole experiment (stages in parallel processes when there are cores); returns the report."""
    from simreal.report import write_report

    workers = worker_count(ctx)
    if workers == 1:
        for seed in ctx.cfg.seeds:
            run_seed(ctx, seed)
    else:
        log.info("running %d seeds' stages in %d worker processes", len(ctx.cfg.seeds), workers)
        _run_parallel(ctx, workers)
    return write_report(ctx.run_dir, ctx.cfg)
