"""Distillation into a camera policy: a teacher that reads the state labels, the pixel student learns.

With `pixels: true`, `distill:` trains the experiment's pixel policy (frozen backbone, cached features,
its head) by imitation instead of by reward. Isaac Lab's and rsl_rl's recipe for vision policies:

1. The teacher is an ordinary state policy of the task (the experiment's algorithm and observation
   settings - e.g. the action history - on the randomized state sim, `pretrain_teacher`): what the
   camera stands in for, learned from reward where reward learning is cheap.
2. DAgger in the randomized pixel sim (physics, look, effects per episode): each env observes the
   image and, for the teacher only, the state beside it; the student acts (or the teacher, with the
   probability `distill.mixing` lowers over the run), the teacher labels every step, and the student's
   head learns the teacher's actions (`simreal.training.methods.distill.dagger.train`) from its cached
   backbone features and action history - the states its own mistakes lead to included.
3. The student is the same artifact `pretrain` would write for the pixel config (its normalization
   statistics gathered while distilling), so zero-shot, fine-tuning, evaluation and `simreal export`
   take it as they are.

Measured on the pixel pendulum (BENCHMARKS.md): the reward-trained pixel policy stays far below
balancing at 300k steps; the distilled one is taught in a tenth of the steps.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.running_mean_std import RunningMeanStd
from torch.utils.tensorboard import SummaryWriter

from simreal.simulation.adr import AdrState
from simreal.simulation.observation import HISTORY_KEY, ObservationConfig
from simreal.simulation.pixels import SIM_STATE_KEY
from simreal.training.engine.artifacts import ArtifactError, file_sha256
from simreal.training.engine.context import Context
from simreal.training.engine.evaluation import evaluate, normalize
from simreal.training.engine.events import keep_before
from simreal.training.engine.perception import Encoder, Encoding
from simreal.training.engine.sb3.loading import build_model, load_for_env
from simreal.training.engine.stage import policy_env, policy_meta
from simreal.training.methods.distill.dagger import (
    CHECKPOINT,
    DISTILL_SEED,
    Cadence,
    Holdout,
    LabelBuffer,
    Rows,
    actor_params,
    distills_critics,
    finish_critics,
    holdout_rows,
    resume,
    save_checkpoint,
    train,
    train_rows,
    warn_overfitting,
    write_student,
)
from simreal.training.methods.distill.setup import STUDENT, context_for, student_config

log = logging.getLogger("simreal")


def check_pixel_teacher(cfg: Any, teacher: Path, meta: dict[str, Any]) -> None:
    """A camera student's teacher must read the state with the experiment's action history (the rows
    it labels are built from the env's `state` and `action_history` entries): one line otherwise."""
    if meta.get("pixels"):
        raise ArtifactError(
            f"{teacher}: a pixel policy cannot teach a camera student (allowed: a state policy)"
        )
    theirs = ObservationConfig.model_validate(meta.get("observation") or {})
    if theirs.privileged or theirs.history_window:
        raise ArtifactError(
            f"{teacher}: a privileged or history-window teacher, but a camera student's teacher reads the "
            "state and action history only (allowed: a state policy of this task)"
        )
    if theirs.action_history != cfg.observation.action_history:
        raise ArtifactError(
            f"{teacher}: the teacher observes observation.action_history {theirs.action_history}, the "
            f"experiment {cfg.observation.action_history} (allowed: the same)"
        )


class StudentStats:
    """The student's observation statistics, updated with every row it reads (as `VecNormalize` does
    while training) - None without `algo.normalize_obs`."""

    def __init__(self, width: int, enabled: bool) -> None:
        self.rms = RunningMeanStd(shape=(width,)) if enabled else None

    def update(self, rows: np.ndarray) -> np.ndarray:
        if self.rms is not None:
            self.rms.update(rows)
        return normalize(rows, self.rms)

    def state(self) -> dict[str, torch.Tensor]:
        if self.rms is None:
            return {}
        rms = self.rms
        return {
            "mean": torch.as_tensor(rms.mean),
            "var": torch.as_tensor(rms.var),
            "count": torch.tensor(rms.count, dtype=torch.float64),
        }

    def load(self, state: dict[str, torch.Tensor]) -> None:
        if self.rms is not None and state:
            self.rms.mean = state["mean"].numpy().astype(np.float64)
            self.rms.var = state["var"].numpy().astype(np.float64)
            self.rms.count = float(state["count"])


class RawRows(LabelBuffer):
    """Labels with the student's rows kept raw, normalized when sampled (its statistics keep moving)."""

    def __init__(self, size: int, student_dim: int, teacher_dim: int, stats: StudentStats) -> None:
        super().__init__(size, student_dim, teacher_dim)
        self.stats = stats

    def sample(self, rng: np.random.Generator, batch: int) -> tuple[Rows, np.ndarray]:
        student, teacher = super().sample(rng, batch)
        assert isinstance(student, np.ndarray)
        return normalize(student, self.stats.rms), teacher


class FrameRows(LabelBuffer):
    """Labels for an end-to-end camera student (`perception.cache_features: false`): its observations
    as the env gives them - uint8 frames, and the entries beside them - which its extractor (and its
    augmentation) reads at every update. 36 KB a row for 3 stacked 64x64 frames, allocated as it fills."""

    def __init__(self, size: int, space: gym.spaces.Space[Any], teacher_dim: int) -> None:
        super().__init__(size, 0, teacher_dim)
        boxes = space.spaces if isinstance(space, gym.spaces.Dict) else {"": space}
        self.entries = {k: np.zeros((size, *(box.shape or ())), dtype=box.dtype) for k, box in boxes.items()}
        self.keyed = isinstance(space, gym.spaces.Dict)

    def add(self, student: Rows, teacher: np.ndarray) -> None:
        rows = student if isinstance(student, dict) else {"": student}
        idx = (self.at + np.arange(len(teacher))) % self.size
        for key, column in self.entries.items():
            column[idx] = rows[key]
        self.teacher[idx] = teacher
        self.at = int((self.at + len(teacher)) % self.size)
        self.n = min(self.n + len(teacher), self.size)

    def sample(self, rng: np.random.Generator, batch: int) -> tuple[Rows, np.ndarray]:
        idx = rng.integers(0, self.n, size=min(batch, self.n))
        rows = {k: v[idx] for k, v in self.entries.items()}
        return (rows if self.keyed else rows[""]), self.teacher[idx]


def teacher_rows(observations: list[dict[str, Any]]) -> np.ndarray:
    """What the teacher reads of each env's Dict observation: the whole state, then the action history
    (the layout `ActionHistory` gives a state observation)."""
    rows = []
    for obs in observations:
        parts = [np.asarray(obs[SIM_STATE_KEY], dtype=np.float32).ravel()]
        if HISTORY_KEY in obs:
            parts.append(np.asarray(obs[HISTORY_KEY], dtype=np.float32).ravel())
        rows.append(np.concatenate(parts))
    return np.stack(rows)


def label_buffer(
    size: int, space: gym.spaces.Space[Any], width: int, teacher_dim: int, stats: StudentStats, cached: bool
) -> LabelBuffer:
    """Room for `size` labelled rows: cached features (normalized when sampled), or frames."""
    return RawRows(size, width, teacher_dim, stats) if cached else FrameRows(size, space, teacher_dim)


def student_rows(encoded: Any) -> Rows:
    """What the student reads of a batch: cached features as float32, or frames and entries as they are
    (the teacher's whole state, never a policy input, left out)."""
    if isinstance(encoded, dict):
        return {k: np.asarray(v) for k, v in encoded.items() if k != SIM_STATE_KEY}
    return np.asarray(encoded, dtype=np.float32)


def pixel_source(
    ctx: Context, teacher_meta: dict[str, Any], teacher_state: bool
) -> Callable[[], gym.Env[Any, Any]]:
    """The randomized pixel sim as the policy observes it (with `teacher_state`, the whole state beside
    the student's view), with ADR at the ranges the teacher's pretraining reached."""
    spec = ctx.cfg.task.randomization
    kwargs: dict[str, Any] = {"teacher_state": teacher_state}
    if spec.adr is not None and teacher_meta.get("adr"):
        kwargs["adr"] = AdrState.frozen_at(spec.adr, spec.params, teacher_meta["adr"])
    source_id = ctx.task.pixel_randomized_id
    return lambda: ctx.make_env(source_id, **kwargs)


def distill_pixel_student(
    ctx: Context, teacher: Path, teacher_meta: dict[str, Any], seed: int, out: Path
) -> Path:
    """DAgger from the state teacher into the experiment's pixel policy; returns the student artifact."""
    cfg = ctx.cfg
    d = cfg.distill
    assert d is not None
    check_pixel_teacher(cfg, teacher, teacher_meta)

    sctx = context_for(ctx, student_config(cfg))
    algo = sctx.cfg.algo
    spaces_venv, encoder = policy_env(sctx, ctx.task.pixel_randomized_id, seed, n_envs=1)
    student = build_model(algo, spaces_venv, algo.pretrain_lr, ctx.device, seed, encoder)
    space = spaces_venv.observation_space
    cached = encoder.cached is not None  # else frames: the student's CNN learns end to end
    width = int(space.shape[0]) if cached else 0  # type: ignore[index]
    stats = StudentStats(width, algo.normalize_obs)
    state_id = ctx.task.randomized_id
    loaded = load_for_env(teacher, lambda: gym.make(state_id), ctx.device, seed)
    teacher_model, teacher_rms = loaded.model, loaded.obs_rms
    teacher_model.policy.set_training_mode(False)
    optimizer = torch.optim.Adam(student.policy.parameters(), lr=d.learning_rate)
    plain = pixel_source(ctx, teacher_meta, teacher_state=False)
    final_seed, episodes = ctx.eval_seed(seed, True), cfg.evaluation.final_episodes
    untrained = evaluate(student, plain, episodes, final_seed, None, encoder, ctx.eval_envs).mean_return
    step = resume(out / CHECKPOINT, student, optimizer, lambda data: stats.load(data.get("obs_rms") or {}))
    labelled = pixel_source(ctx, teacher_meta, teacher_state=True)
    log.info(
        "distill seed %d: %s -> pixel student (%s, %s) for %d steps -> %s",
        seed,
        teacher,
        cfg.perception.backbone if cfg.perception else "no backbone",
        "cached features" if cached else "end to end, from frames",
        d.steps,
        out,
    )
    keep_before(out, step + 1 if step else 0)  # an interrupted attempt's values past the checkpoint
    writer = SummaryWriter(str(out), purge_step=step + 1 if step else None)
    started = time.perf_counter()
    envs = [labelled() for _ in range(d.n_envs)]
    try:
        teacher_dim = int(teacher_model.observation_space.shape[0])  # type: ignore[index]
        buffer = label_buffer(train_rows(d), space, width, teacher_dim, stats, cached)
        held = label_buffer(holdout_rows(d), space, width, teacher_dim, stats, cached)
        losses, step = _loop(
            ctx,
            seed,
            step,
            teacher_model,
            teacher_rms,
            student,
            stats,
            encoder,
            envs,
            buffer,
            held,
            optimizer,
            out,
            writer,
        )
    finally:
        for env in envs:
            env.close()
    wall = time.perf_counter() - started
    warn_overfitting(losses)
    finish_critics(student, distills_critics(d, teacher_model, student))
    student.num_timesteps = step
    student_return = evaluate(student, plain, episodes, final_seed, stats.rms, encoder, ctx.eval_envs)
    teacher_return = evaluate(teacher_model, loaded.make_env, episodes, final_seed, teacher_rms)
    summary = {
        "teacher_policy": str(teacher),
        "steps": step,
        "wall_s": round(wall, 2),
        "untrained_source_return": untrained,
        "teacher_source_return": teacher_return.mean_return,
        "student_source_return": student_return.mean_return,
        "student_source_returns": student_return.returns.tolist(),
        "teacher_params": actor_params(teacher_model),
        "student_params": actor_params(student),
        "final_losses": losses,
    }
    meta = {
        **policy_meta(sctx, STUDENT, seed, ctx.task.pixel_randomized_id, spaces_venv),
        "teacher": {"policy": str(teacher), "sha256": file_sha256(teacher)},
        "distill": d.model_dump(mode="json"),
    }
    spaces_venv.close()
    return write_student(out, summary, meta, student, stats.rms, writer, encoder.backbone_state())


def _loop(
    ctx: Context,
    seed: int,
    step: int,
    teacher: BaseAlgorithm,
    teacher_rms: RunningMeanStd | None,
    student: BaseAlgorithm,
    stats: StudentStats,
    encoder: Encoder,
    envs: list[gym.Env[Any, Any]],
    buffer: LabelBuffer,
    held: LabelBuffer,
    optimizer: torch.optim.Optimizer,
    out: Path,
    writer: SummaryWriter,
) -> tuple[dict[str, float], int]:
    """Act (student or teacher), label, learn - from `step` to `distill.steps` in whole steps of every
    env; the student's rows come from one backbone batch per step (each new frame encoded once)."""
    d = ctx.cfg.distill
    assert d is not None
    rng = np.random.default_rng([seed, step, 17])
    holdout = Holdout(d.holdout, len(envs), held, rng)
    encode: Encoding = encoder.batch()
    obs = [env.reset(seed=DISTILL_SEED + 100_000 * seed + step + i)[0] for i, env in enumerate(envs)]
    previous: list[int | None] = [None] * len(envs)
    returns = np.zeros(len(envs))
    cadence = Cadence(d, ctx.cfg.checkpoint_every_steps, step, writer)
    while step < d.steps:
        raw = student_rows(encode(obs, previous))
        s = stats.update(raw) if isinstance(raw, np.ndarray) else raw
        t = normalize(teacher_rows(obs), teacher_rms)
        holdout.add(buffer, raw, t)
        beta = d.mixing.beta(step, d.steps)
        teacher_act, _ = teacher.predict(t, deterministic=True)
        student_act, _ = student.predict(s, deterministic=True)
        use_teacher = rng.random(len(envs)) < beta
        previous = list(range(len(envs)))
        for i, env in enumerate(envs):
            obs[i], reward, terminated, truncated, _ = env.step(
                teacher_act[i] if use_teacher[i] else student_act[i]
            )
            returns[i] += float(reward)
            if terminated or truncated:
                cadence.finished.append(returns[i])
                returns[i] = 0.0
                obs[i], _ = env.reset()
                holdout.new_episode(i)
                previous[i] = None
        step += len(envs)
        cadence.tick(
            step,
            beta,
            buffer.n >= d.batch_size,
            lambda: train(d, teacher, student, optimizer, buffer, rng, ctx.device, holdout.buffer),
            lambda at: save_checkpoint(out / CHECKPOINT, student, optimizer, at, obs_rms=stats.state()),
        )
    return cadence.losses, step
