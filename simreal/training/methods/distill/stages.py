"""Teacher-student distillation: a privileged teacher, and a student that sees only what the robot sees.

RMA (Kumar et al. 2021) and Isaac Lab's teacher -> student recipe, on stable-baselines3:

1. `pretrain_teacher`: the experiment's algorithm in the randomized sim, observing also the sampled
   physics and effects (`Privileged`) through an environment-factor encoder to a small latent z.
2. `distill_student`: online distillation in the randomized sim. The student observes its recent
   (observation, action) history (`History`) through a 1-D conv or GRU encoder; it acts (or the teacher
   does, with a probability that falls over the run: DAgger), the teacher labels every step, and the
   student learns the teacher's actions (MSE or Huber), its latent z (RMA's adaptation module) and its
   value (the loop and the losses: `simreal.training.methods.distill.dagger`). With the teacher's
   network shape the student starts from the teacher's policy head.
3. The student is an ordinary policy artifact (its history encoder is its features extractor), so it
   runs zero-shot on the target and is fine-tuned there like any policy (`zeroshot_student`,
   `finetune_student`), and `simreal export` takes its history encoder into the ONNX graph.
"""

from __future__ import annotations

import json
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
from stable_baselines3.common.vec_env import DummyVecEnv
from torch.utils.tensorboard import SummaryWriter

from simreal.config import AlgoConfig, ExperimentConfig
from simreal.sections.distill import DistillConfig
from simreal.simulation.adr import AdrState
from simreal.simulation.observation import ObservationConfig, observation_wrapper
from simreal.simulation.privileged import Window
from simreal.training.engine import artifacts as art
from simreal.training.engine.artifacts import (
    ArtifactError,
    SpacesEnv,
    atomic_write_text,
    file_sha256,
    load_policy,
)
from simreal.training.engine.context import Context
from simreal.training.engine.evaluation import evaluate
from simreal.training.engine.events import keep_before
from simreal.training.engine.sb3.loading import build_model, load_for_env
from simreal.training.engine.stage import policy_meta
from simreal.training.methods.distill.dagger import (
    CHECKPOINT,
    actor_params,
    copy_head,
    distill_loop,
    distills_critics,
    finish_critics,
    resume,
    student_rms,
    warn_overfitting,
    write_student,
)
from simreal.training.methods.distill.pixels import distill_pixel_student
from simreal.training.methods.distill.setup import (
    STUDENT,
    TEACHER,
    context_for,
    source_spaces,
    student_config,
    teacher_config,
)
from simreal.training.methods.pretrain import pretrain

log = logging.getLogger("simreal")


def source_maker(ctx: Context, teacher_meta: dict[str, Any]) -> Callable[[], gym.Env[Any, Any]]:
    """The randomized sim as the teacher ended its pretraining: with ADR, at the ranges it reached
    (fixed), not ADR's small starting ranges."""
    spec = ctx.cfg.task.randomization
    source_id = ctx.task.randomized_id
    if spec.adr is None or not teacher_meta.get("adr"):
        return lambda: gym.make(source_id)
    adr = AdrState.frozen_at(spec.adr, spec.params, teacher_meta["adr"])
    return lambda: gym.make(source_id, adr=adr)


def check_teacher(cfg: ExperimentConfig, teacher: Path) -> dict[str, Any]:
    """The teacher artifact's metadata, refused (one line) when it cannot teach this experiment's student:
    another algorithm, or spaces that do not match the task's (privileged) source env."""
    meta = load_policy(teacher).meta
    name = meta.get("algo", {}).get("name")
    if name != cfg.algo.name:
        raise ArtifactError(
            f"{teacher}: a {name} teacher, but algo.name is {cfg.algo.name} (allowed: the same)"
        )
    observation = ObservationConfig.model_validate(meta.get("observation") or {})
    try:
        obs_space, act_space = source_spaces(cfg, observation)
    except ValueError as err:
        raise ArtifactError(f"{teacher}: {err}") from None
    for kind, space in (("observation", obs_space), ("action", act_space)):
        have = meta[f"{kind}_space"]
        if not art.spaces_match(have, space, bounds=kind == "action"):
            raise ArtifactError(
                f"{teacher}: its {kind} space (shape {tuple(have.get('shape', ()))}) does not match task "
                f"{cfg.task.name}'s source env as the teacher sees it (shape {space.shape}) (allowed: a "
                "teacher pretrained on this task)"
            )
    return meta


def _provenance(out: Path, teacher: Path, d: DistillConfig) -> dict[str, Any]:
    """The teacher (path, content hash) and the distill settings a student stage is made from, in
    `out/source.json`; a stage directory made from another teacher or other settings is refused."""
    record = {
        "teacher_policy": str(teacher),
        "teacher_sha256": file_sha256(teacher),
        "distill": d.model_dump(),
    }
    path = out / "source.json"
    if path.is_file():
        before = json.loads(path.read_text())
        if (
            before.get("teacher_sha256") != record["teacher_sha256"]
            or before.get("distill") != record["distill"]
        ):
            what = (
                "teacher" if before.get("teacher_sha256") != record["teacher_sha256"] else "distill settings"
            )
            raise ArtifactError(
                f"{out}: a student distilled from {before.get('teacher_policy')} with other {what} than now "
                f"({teacher}) (allowed: another experiment name or output folder, or remove it)"
            )
    else:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json.dumps(record, indent=1), path)
    return record


def distill_student(ctx: Context, teacher: Path, seed: int, out: Path | None = None) -> Path:
    """Distill the teacher artifact into a history-based student in the randomized sim; returns the
    student's policy artifact (skipped when it exists; continues from its checkpoint after a crash)."""
    torch.set_num_threads(ctx.cfg.torch_threads)
    out = out or ctx.stage_dir(STUDENT, seed)
    policy_path = out / "policy.pt"
    cfg = ctx.cfg
    assert cfg.distill is not None
    d = cfg.distill
    _provenance(out, teacher, d)
    if policy_path.exists():
        return policy_path
    teacher_meta = check_teacher(cfg, teacher)
    if cfg.pixels:
        return distill_pixel_student(ctx, teacher, teacher_meta, seed, out)
    scfg = student_config(cfg, teacher_meta)
    make_source = source_maker(ctx, teacher_meta)
    loaded = load_for_env(teacher, make_source, ctx.device, seed)
    teacher_model, teacher_rms = loaded.model, loaded.obs_rms
    teacher_model.policy.set_training_mode(False)
    envs = [loaded.make_env() for _ in range(d.n_envs)]
    teacher_space, act_space = envs[0].observation_space, envs[0].action_space
    assert isinstance(teacher_space, gym.spaces.Box) and isinstance(act_space, gym.spaces.Box)
    extractor = teacher_meta["algo"].get("policy_extra", {}).get("features_extractor_kwargs", {})
    obs_dim = int(extractor.get("obs_dim", teacher_space.shape[0]))  # a plain teacher: all it sees
    base_obs = gym.spaces.Box(teacher_space.low[:obs_dim], teacher_space.high[:obs_dim], dtype=np.float32)
    windows = [Window(base_obs, act_space, d.student.history) for _ in envs]
    srms = student_rms(teacher_rms, windows[0], act_space)
    spaces_venv = DummyVecEnv([lambda: SpacesEnv(windows[0].space, act_space)])
    student = build_model(scfg.algo, spaces_venv, scfg.algo.pretrain_lr, ctx.device, seed)
    untrained = _source_return(ctx, seed, student, srms, scfg, make_source)
    copied = copy_head(teacher_model, student)
    optimizer = torch.optim.Adam(student.policy.parameters(), lr=d.learning_rate)
    step = resume(out / CHECKPOINT, student, optimizer)
    log.info(
        "distill seed %d: %s -> student (history %d, %s; started from the teacher's %s) for %d steps -> %s",
        seed,
        teacher,
        d.student.history,
        d.student.encoder,
        copied,
        d.steps,
        out,
    )
    keep_before(out, step + 1 if step else 0)  # an interrupted attempt's values past the checkpoint
    writer = SummaryWriter(str(out), purge_step=step + 1 if step else None)
    started = time.perf_counter()
    losses, step = distill_loop(
        ctx, seed, step, teacher_model, teacher_rms, student, srms, optimizer, envs, windows, out, writer
    )
    wall = time.perf_counter() - started
    for env in envs:
        env.close()
    warn_overfitting(losses)
    finish_critics(student, distills_critics(d, teacher_model, student) or "critic_latent_loss" in losses)
    student.num_timesteps = step
    summary = {
        "teacher_policy": str(teacher),
        "steps": step,
        "wall_s": round(wall, 2),
        "started_from_teacher": copied,
        "untrained_source_return": untrained,
        "teacher_source_return": _source_return(ctx, seed, teacher_model, teacher_rms, None, loaded.make_env),
        "student_source_return": _source_return(ctx, seed, student, srms, scfg, make_source),
        "teacher_params": actor_params(teacher_model),
        "student_params": actor_params(student),
        "final_losses": losses,
    }
    meta = {
        **policy_meta(context_for(ctx, scfg), STUDENT, seed, ctx.task.randomized_id, spaces_venv),
        "teacher": {"policy": str(teacher), "sha256": file_sha256(teacher)},
        "distill": d.model_dump(mode="json"),
    }
    return write_student(out, summary, meta, student, srms, writer)


def _source_return(
    ctx: Context,
    seed: int,
    model: BaseAlgorithm,
    rms: RunningMeanStd | None,
    view: ExperimentConfig | None,
    make_env: Callable[[], gym.Env[Any, Any]],
) -> float:
    """Mean return in the randomized sim on the final evaluation seeds (`view`: whose observation
    wrappers to put over `make_env`'s env; None: it is already what the model sees)."""
    wrap = observation_wrapper(view.observation) if view is not None else None

    def make() -> gym.Env[Any, Any]:
        env = make_env()
        return wrap(env) if wrap else env

    result = evaluate(model, make, ctx.cfg.evaluation.final_episodes, ctx.eval_seed(seed, True), rms)
    return result.mean_return


def pretrain_teacher(ctx: Context, seed: int) -> Path:
    """The privileged teacher, pretrained in the randomized sim (stage `pretrain_teacher`)."""
    return pretrain(context_for(ctx, teacher_config(ctx.cfg)), seed, randomized=True, variant=TEACHER)


def student_context(ctx: Context, student: Path) -> Context:
    """The experiment as the student artifact sees it: its observation view and network."""
    meta = load_policy(student).meta
    cfg = ctx.cfg.model_copy(
        update={
            "observation": ObservationConfig.model_validate(meta["observation"]),
            "algo": AlgoConfig.model_validate(meta["algo"]),
        }
    )
    return context_for(ctx, cfg)
