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
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv
from tqdm import tqdm

import envs
from agents.algorithms import make_model
from simreal import transfer as tr
from simreal.artifacts import (
    ArtifactError,
    PolicyArtifact,
    atomic_write_text,
    check_spaces,
    load_policy,
    load_torch_state,
    save_policy,
)
from simreal.config import AlgoConfig, ExperimentConfig, dump_config
from simreal.evaluation import EvalResult, evaluate
from simreal.executors import Submit, executor
from simreal.observation import ObservationConfig, observation_wrapper
from simreal.perception import Encoder, PerceptionConfig, attach
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
        if self.cfg.pixels:
            return self.task.pixel_target_id(self.cfg.target)
        return self.task.target_id(self.cfg.target)

    def source_id(self, randomized: bool) -> str:
        if self.cfg.pixels:
            return self.task.pixel_randomized_id if randomized else self.task.pixel_nominal_id
        return self.task.randomized_id if randomized else self.task.nominal_id

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


def build_model(
    algo: AlgoConfig, env: Any, lr: Any, device: torch.device, seed: int, encoder: Encoder | None = None
) -> BaseAlgorithm:
    policy_kwargs = {**algo.policy_kwargs(), **(encoder.policy_kwargs if encoder else {})}
    return make_model(algo.name, algo.policy, env, lr, policy_kwargs, dict(algo.kwargs), device, seed)


def _backbone_lr(ctx: Context, model: BaseAlgorithm) -> None:
    """Unfrozen backbone blocks train at `perception.backbone_lr_factor` x the policy's rate."""
    perception = ctx.cfg.perception
    if perception is not None and perception.unfreeze_last > 0:
        n = tr.scale_backbone_lr(model, perception.backbone_lr_factor)
        log.info("%d backbone parameters at %.2g x the learning rate", n, perception.backbone_lr_factor)


def policy_env(
    ctx: Context,
    env_id: str,
    seed: int,
    n_envs: int | None = None,
    obs_rms: Any = None,
    update_stats: bool = True,
) -> tuple[VecEnv, Encoder]:
    """The vec env a policy trains on (observation wrappers, normalization, perception) and its encoder."""
    algo = ctx.cfg.algo
    venv = make_vec(
        env_id, n_envs or algo.n_envs, seed, algo.normalize_obs, obs_rms, update_stats, wrapper=ctx.wrapper
    )
    return attach(ctx.cfg.perception, venv, ctx.device)


def _meta(ctx: Context, variant: str, seed: int, env_id: str) -> dict[str, Any]:
    return {
        "variant": variant,
        "seed": seed,
        "env_id": env_id,
        "task": ctx.cfg.task,
        "algo": ctx.cfg.algo.model_dump(mode="json"),
        "observation": ctx.cfg.observation.model_dump(mode="json"),
        "perception": ctx.cfg.perception.model_dump(mode="json") if ctx.cfg.perception else None,
        "pixels": ctx.cfg.pixels,
    }


def pretrain(ctx: Context, seed: int, randomized: bool) -> Path:
    """Train on the randomized (or nominal) source sim; returns the policy artifact path."""
    variant = "pretrain_randomized" if randomized else "pretrain_nominal"
    out = ctx.stage_dir(variant, seed)
    if (out / POLICY).exists():
        return out / POLICY
    env_id = ctx.source_id(randomized)
    algo = ctx.cfg.algo
    venv, encoder = policy_env(ctx, env_id, seed)
    model = build_model(algo, venv, algo.pretrain_lr, ctx.device, seed, encoder)
    _backbone_lr(ctx, model)
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
    meta = _meta(ctx, variant, seed, env_id)
    save_policy(model, obs_rms_of(venv), meta, out / POLICY, backbone=encoder.backbone_state())
    venv.close()
    return out / POLICY


@dataclass(frozen=True)
class LoadedPolicy:
    """A saved policy rebuilt for an env: model, normalization statistics, encoder and an env factory
    that applies the observation wrappers the policy was trained with."""

    model: BaseAlgorithm
    obs_rms: Any
    encoder: Encoder
    make_env: Callable[[], gym.Env[Any, Any]]


def _rebuild(
    art: PolicyArtifact, env: Any, device: torch.device, seed: int, encoder: Encoder
) -> BaseAlgorithm:
    """The algorithm of `art` built on `env` (spaces checked) with `art`'s weights."""
    check_spaces(art.meta, env.observation_space, env.action_space)
    algo = AlgoConfig.model_validate(art.meta["algo"])
    model = build_model(algo, env, algo.pretrain_lr, device, seed, encoder)
    load_torch_state(model, art.states, art.tensors, include_optimizers=False)
    return model


def load_for_env(path: Path, env_id: str, device: torch.device, seed: int) -> LoadedPolicy:
    """Rebuild a saved policy for env `env_id` with the observation wrappers and perception it was
    trained with (spaces checked)."""
    art = load_policy(path, device)
    wrapper = observation_wrapper(ObservationConfig.model_validate(art.meta.get("observation") or {}))
    perception = art.meta.get("perception")
    venv = make_vec(env_id, 1, seed, False, None, wrapper=wrapper)
    venv, encoder = attach(PerceptionConfig.model_validate(perception) if perception else None, venv, device)
    encoder.load_backbone_state(art.backbone)
    model = _rebuild(art, venv, device, seed, encoder)

    def make_env() -> gym.Env[Any, Any]:
        env = gym.make(env_id)
        return wrapper(env) if wrapper else env

    return LoadedPolicy(model, art.obs_rms, encoder, make_env)


def load_model(path: Path, env: Any, device: torch.device, seed: int) -> tuple[BaseAlgorithm, Any]:
    """Rebuild a saved state-based policy on `env` (spaces checked); returns (model, its statistics).

    Policies with a perception backbone need `load_for_env`, which rebuilds the frozen encoder too."""
    art = load_policy(path, device)
    if art.meta.get("perception"):
        raise ArtifactError(f"{path}: a pixel policy with a backbone; load it with load_for_env")
    return _rebuild(art, env, device, seed, Encoder({})), art.obs_rms


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
    loaded = load_for_env(policy, ctx.target_id, ctx.device, seed)
    episodes, eval_seed = ctx.cfg.evaluation.final_episodes, ctx.eval_seed(seed, True)
    result = evaluate(
        loaded.model, loaded.make_env, episodes, eval_seed, loaded.obs_rms, loaded.encoder.encode
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
        venv, encoder = policy_env(ctx, ctx.target_id, seed)
        model = build_model(algo, venv, algo.pretrain_lr, ctx.device, seed, encoder)
        _backbone_lr(ctx, model)
    else:
        art = load_policy(source, ctx.device)
        venv, encoder = policy_env(
            ctx,
            ctx.target_id,
            seed,
            obs_rms=None if ft.obs_norm == "reset" else art.obs_rms,
            update_stats=ft.obs_norm != "keep",
        )
        encoder.load_backbone_state(art.backbone)
        adapt_to_target(ctx, encoder, seed)
        check_spaces(art.meta, venv.observation_space, venv.action_space)
        schedule = WarmupDecaySchedule(cfg.finetune_lr, ft.lr_schedule, ft.lr_warmup_fraction)
        model = build_model(algo, venv, schedule, ctx.device, seed, encoder)
        load_torch_state(model, art.states, art.tensors, include_optimizers=False)
        if ft.reinit_heads:
            tr.reinit_heads(model, seed)
        if ft.freeze_features:
            tr.freeze_features(model)
        tr.freeze_layers(model, ft.freeze_layers)
        if ft.reset_entropy:
            tr.reset_entropy(model)
        tr.rebuild_optimizers(model)
        _backbone_lr(ctx, model)
        summary = tr.summarize(model)
        log.info(
            "transfer seed %d: %d of %d parameters trainable, lr %.2e",
            seed,
            summary.trainable_params,
            summary.total_params,
            cfg.finetune_lr,
        )
    schedule_eval = EvalSchedule(
        ctx.make_target,
        cfg.evaluation.every_steps,
        cfg.evaluation.episodes,
        ctx.eval_seed(seed),
        encoder.encode,
    )
    log.info("%s seed %d on %s for %d target steps -> %s", variant, seed, ctx.target_id, ft.timesteps, out)
    train_stage(model, ft.timesteps, out, schedule_eval, cfg.checkpoint_every_steps, ctx.progress_bar)
    rms = obs_rms_of(venv)
    meta = _meta(ctx, variant, seed, ctx.target_id)
    save_policy(model, rms, meta, out / POLICY, backbone=encoder.backbone_state())
    result = evaluate(
        model, ctx.make_target, cfg.evaluation.final_episodes, ctx.eval_seed(seed, True), rms, encoder.encode
    )
    venv.close()
    _write_final(out, result)


def adapt_to_target(ctx: Context, encoder: Encoder, seed: int) -> None:
    """AdaBN: re-estimate the frozen backbone's BatchNorm statistics on target frames (random actions).

    The frames are target interaction too: they are logged, and not counted in the fine-tuning budget."""
    perception = ctx.cfg.perception
    if perception is None or perception.adabn_frames == 0 or encoder.cached is None:
        return
    env = ctx.make_target()
    env.action_space.seed(seed)
    frames = [env.reset(seed=ctx.eval_seed(seed) + 500)[0]]
    while len(frames) < perception.adabn_frames:
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        frames.append(env.reset()[0] if terminated or truncated else obs)
    env.close()
    layers = encoder.cached.adapt_batchnorm(np.stack(frames))
    log.info("AdaBN seed %d: %d BatchNorm layers re-estimated on %d target frames", seed, layers, len(frames))


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


def worker_count(ctx: Context) -> int:
    """Processes to run stages in: `workers`, or with 0 (auto) one per core, at most one per stage."""
    wanted = ctx.cfg.workers or (os.cpu_count() or 1)
    return max(1, min(wanted, 3 * len(ctx.cfg.seeds)))


def _run_jobs(ctx: Context, submit: Submit) -> None:
    """Stages as jobs: pretraining and scratch start at once, each seed's zero-shot and fine-tuning
    start as soon as its pretrained policy exists."""
    quiet = dataclasses.replace(ctx, progress_bar=False)
    running: dict[Future[Any], tuple[str, int]] = {}
    for seed in ctx.cfg.seeds:
        running[submit(pretrain, quiet, seed, True)] = ("randomized", seed)
    for seed in ctx.cfg.seeds:
        if ctx.cfg.pretrain.nominal_baseline:
            running[submit(pretrain, quiet, seed, False)] = ("nominal", seed)
    for seed in ctx.cfg.seeds:
        if ctx.cfg.scratch:
            running[submit(scratch, quiet, seed)] = ("scratch", seed)
    total = len(running) + sum(1 for kind, _ in running.values() if kind in ("randomized", "nominal"))
    bar = tqdm(total=total, desc="stages", unit="stage", disable=not ctx.progress_bar)
    while running:
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in done:
            kind, seed = running.pop(future)
            result = future.result()  # re-raises a stage's error here
            bar.update(1)
            if kind == "randomized":
                running[submit(_transfer_from, quiet, result, seed)] = ("transfer", seed)
            elif kind == "nominal":
                running[submit(zero_shot, quiet, result, seed, "zeroshot_nominal")] = ("zeroshot", seed)
    bar.close()


def run(ctx: Context, backend: str = "local", address: str | None = None) -> dict[str, Any]:
    """The whole experiment (stages in parallel processes or Ray tasks when there is room) and its report."""
    from simreal.report import write_report

    workers = worker_count(ctx)
    if backend == "local" and workers == 1 and address is None:
        for seed in ctx.cfg.seeds:
            run_seed(ctx, seed)
    else:
        log.info("running %d seeds' stages on %s with %d workers", len(ctx.cfg.seeds), backend, workers)
        with executor(backend, workers, address) as submit:
            _run_jobs(ctx, submit)
    return write_report(ctx.run_dir, ctx.cfg)
