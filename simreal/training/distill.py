"""Teacher-student distillation: a privileged teacher, and a student that sees only what the robot sees.

RMA (Kumar et al. 2021) and Isaac Lab's teacher -> student recipe, on stable-baselines3:

1. `pretrain_teacher`: the experiment's algorithm in the randomized sim, observing also the sampled
   physics and effects (`Privileged`) through an environment-factor encoder to a small latent z.
2. `distill_student`: online distillation in the randomized sim. The student observes its recent
   (observation, action) history (`History`) through a 1-D conv or GRU encoder; it acts (or the teacher
   does, with a probability that falls over the run: DAgger), the teacher labels every step, and the
   student learns the teacher's actions (MSE or Huber), its latent z (RMA's adaptation module) and its
   value. With the teacher's network shape the student starts from the teacher's policy head.
3. The student is an ordinary policy artifact (its history encoder is its features extractor), so it
   runs zero-shot on the target and is fine-tuned there like any policy (`zeroshot_student`,
   `finetune_student`), and `simreal export` takes its history encoder into the ONNX graph.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import DummyVecEnv
from torch.utils.tensorboard import SummaryWriter

from agents.students import LatentExtractor
from simreal.config import AlgoConfig, ExperimentConfig, PretrainConfig
from simreal.simulation.adr import AdrState
from simreal.simulation.observation import ObservationConfig, observation_wrapper
from simreal.simulation.privileged import Window
from simreal.training import artifacts as art
from simreal.training.artifacts import (
    ArtifactError,
    SpacesEnv,
    atomic_save,
    atomic_write_text,
    file_sha256,
    load_policy,
    safe_load,
    save_policy,
)
from simreal.training.context import Context
from simreal.training.distill_config import DistillConfig
from simreal.training.evaluation import evaluate, normalize
from simreal.training.loading import build_model, load_for_env
from simreal.training.stages import _meta, pretrain, zero_shot
from simreal.training.target import finetune

log = logging.getLogger("simreal")

TEACHER, STUDENT = "pretrain_teacher", "student"
PRIVILEGED_EXTRACTOR = "agents.students:PrivilegedExtractor"
HISTORY_EXTRACTOR = "agents.students:HistoryExtractor"
SUPPORTED = ("PPO", "A2C", "SAC")
SUMMARY = "distill.json"
CHECKPOINT = "distill_checkpoint.pt"
DISTILL_SEED = 10_000_000


def source_spaces(
    cfg: ExperimentConfig, observation: ObservationConfig
) -> tuple[gym.spaces.Box, gym.spaces.Box]:
    """The randomized source env's spaces as a policy with `observation` sees them (one sim instance)."""
    wrap = observation_wrapper(observation)
    from simreal.simulation.registry import ensure

    env = gym.make(ensure(cfg.task).randomized_id)
    env = wrap(env) if wrap else env
    try:
        return env.observation_space, env.action_space  # type: ignore[return-value]
    finally:
        env.close()


def _with_extractor(algo: AlgoConfig, net_arch: Any, cls: str, kwargs: dict[str, Any]) -> AlgoConfig:
    extra = {**algo.policy_extra, "features_extractor_class": cls, "features_extractor_kwargs": kwargs}
    return algo.model_copy(update={"net_arch": net_arch, "policy_extra": extra})


def teacher_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """The experiment as the privileged teacher trains it: privileged view, the encoder, its budget."""
    assert cfg.distill is not None
    teacher = cfg.distill.teacher
    base = cfg.observation.model_copy(update={"privileged": False, "history_window": 0})
    obs_space, _ = source_spaces(cfg, base)
    kwargs = {
        "obs_dim": int(np.prod(obs_space.shape)),
        "latent_dim": teacher.latent_dim,
        "hidden": teacher.encoder,
    }
    algo = _with_extractor(cfg.algo, teacher.net_arch or cfg.algo.net_arch, PRIVILEGED_EXTRACTOR, kwargs)
    pretrain = PretrainConfig(timesteps=teacher.timesteps or cfg.pretrain.timesteps, nominal_baseline=False)
    observation = base.model_copy(update={"privileged": True})
    return cfg.model_copy(update={"observation": observation, "algo": algo, "pretrain": pretrain})


def student_config(cfg: ExperimentConfig, teacher_meta: dict[str, Any] | None = None) -> ExperimentConfig:
    """The experiment as the student sees it: the history window, the history encoder, its head (the
    teacher's network shape unless `distill.student.net_arch`); with a teacher artifact, its latent size
    and observation settings."""
    assert cfg.distill is not None
    distill = cfg.distill
    observation = ObservationConfig.model_validate(
        (teacher_meta or {}).get("observation") or cfg.observation.model_dump()
    ).model_copy(update={"privileged": False, "history_window": distill.student.history})
    base = observation.model_copy(update={"history_window": 0})
    obs_space, act_space = source_spaces(cfg, base)
    window = Window(obs_space, act_space, distill.student.history)
    teacher_algo = (
        AlgoConfig.model_validate(teacher_meta["algo"]) if teacher_meta else teacher_config(cfg).algo
    )
    latent = teacher_algo.policy_extra.get("features_extractor_kwargs", {}).get("latent_dim")
    kwargs = {
        "obs_dim": window.obs_dim,
        "step_dim": window.step_dim,
        "steps": window.k,
        "latent_dim": int(latent or distill.teacher.latent_dim),
        "encoder": distill.student.encoder,
        "channels": distill.student.channels,
    }
    net_arch = distill.student.net_arch or teacher_algo.net_arch
    plain = teacher_algo.model_copy(update={"policy_extra": cfg.algo.policy_extra})
    algo = _with_extractor(plain, net_arch, HISTORY_EXTRACTOR, kwargs)
    return cfg.model_copy(update={"observation": observation, "algo": algo})


def context_for(ctx: Context, cfg: ExperimentConfig) -> Context:
    return dataclasses.replace(ctx, cfg=cfg)


@dataclass
class _Outputs:
    action: torch.Tensor
    latent: torch.Tensor | None
    value: torch.Tensor | None


def _outputs(model: BaseAlgorithm, obs: torch.Tensor, value: bool = True) -> _Outputs:
    """The deterministic action (PPO/A2C: the Gaussian's mean; SAC: tanh of it, in [-1, 1]), the latent
    z of a latent extractor and (on-policy) the value of a batch of (normalized) observations."""
    policy = model.policy
    if isinstance(policy, ActorCriticPolicy):
        extractor = policy.pi_features_extractor
        features = extractor(obs)
        action = policy.action_net(policy.mlp_extractor.forward_actor(features))
        v = None
        if value:
            vf = features if policy.share_features_extractor else policy.vf_features_extractor(obs)
            v = policy.value_net(policy.mlp_extractor.forward_critic(vf)).squeeze(-1)
    else:  # SAC
        actor: Any = getattr(policy, "actor")  # noqa: B009 - SACPolicy's, untyped on BasePolicy
        extractor = actor.features_extractor
        features = extractor(obs)
        action, v = torch.tanh(actor.mu(actor.latent_pi(features))), None
    latent = features[:, extractor.obs_dim :] if isinstance(extractor, LatentExtractor) else None
    return _Outputs(action, latent, v)


def _critic_latent(critic: Any, obs: torch.Tensor) -> torch.Tensor | None:
    extractor = critic.features_extractor
    return extractor.latent(obs) if isinstance(extractor, LatentExtractor) else None


def _copy_head(teacher: BaseAlgorithm, student: BaseAlgorithm) -> str:
    """Start the student from the teacher's policy head (everything but the features extractors) when
    the shapes agree; else only the action noise (PPO's log_std). SAC's entropy coefficient is the
    teacher's either way. Returns what was copied."""
    _, tensors = art.torch_state(teacher)  # e.g. SAC's log_ent_coef: outside the policy's state dict
    art.load_torch_state(student, {}, tensors)
    mine = student.policy.state_dict()
    theirs = {k: v for k, v in teacher.policy.state_dict().items() if "features_extractor" not in k}
    if all(k in mine and mine[k].shape == v.shape for k, v in theirs.items()):
        student.policy.load_state_dict({**mine, **theirs})
        return "head"
    if "log_std" in theirs and "log_std" in mine and mine["log_std"].shape == theirs["log_std"].shape:
        student.policy.load_state_dict({**mine, "log_std": theirs["log_std"]})
        return "log_std"
    return "nothing"


def _critics(model: BaseAlgorithm) -> Any:
    """SAC's critic (its own features extractor), or None for actor-critic policies."""
    return None if isinstance(model.policy, ActorCriticPolicy) else getattr(model.policy, "critic", None)


def _finish_critics(student: BaseAlgorithm, critic_trained: bool) -> None:
    """SAC: where distillation did not train the critic's own history encoder (a teacher without a
    latent), it takes the actor's; the target critic starts equal to the critic, as in SB3."""
    critic = _critics(student)
    if critic is None:
        return
    actor: Any = getattr(student.policy, "actor")  # noqa: B009 - SACPolicy's, untyped on BasePolicy
    if not critic_trained and critic.features_extractor is not actor.features_extractor:
        critic.features_extractor.load_state_dict(actor.features_extractor.state_dict())
    target: Any = getattr(student.policy, "critic_target", None)
    if target is not None:
        target.load_state_dict(critic.state_dict())


def student_rms(
    teacher: RunningMeanStd | None, window: Window, act_space: gym.spaces.Box
) -> RunningMeanStd | None:
    """The student's observation statistics from the teacher's: its observation part for every
    observation slot, and a uniform over the action bounds for every action slot."""
    if teacher is None:
        return None
    mean_o, var_o = teacher.mean[: window.obs_dim], teacher.var[: window.obs_dim]
    low, high = act_space.low.ravel().astype(np.float64), act_space.high.ravel().astype(np.float64)
    bounded = np.isfinite(low) & np.isfinite(high)
    act_mean = np.where(bounded, (low + high) / 2, 0.0)  # unbounded actions: standard statistics
    act_var = np.where(bounded, (high - low) ** 2 / 12, 1.0)
    step_mean = np.r_[mean_o, act_mean]
    step_var = np.r_[var_o, act_var]
    rms = RunningMeanStd(shape=window.space.shape)
    rms.mean = np.r_[mean_o, np.tile(step_mean, window.k)]
    rms.var = np.r_[var_o, np.tile(step_var, window.k)]
    rms.count = teacher.count
    return rms


class _Buffer:
    """The most recent `size` (student observation, teacher observation) pairs, normalized."""

    def __init__(self, size: int, student_dim: int, teacher_dim: int) -> None:
        self.student = np.zeros((size, student_dim), dtype=np.float32)
        self.teacher = np.zeros((size, teacher_dim), dtype=np.float32)
        self.size, self.n, self.at = size, 0, 0

    def add(self, student: np.ndarray, teacher: np.ndarray) -> None:
        for s, t in zip(student, teacher, strict=True):
            self.student[self.at], self.teacher[self.at] = s, t
            self.at = (self.at + 1) % self.size
            self.n = min(self.n + 1, self.size)

    def sample(self, rng: np.random.Generator, batch: int) -> tuple[np.ndarray, np.ndarray]:
        idx = rng.integers(0, self.n, size=min(batch, self.n))
        return self.student[idx], self.teacher[idx]


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
    copied = _copy_head(teacher_model, student)
    optimizer = torch.optim.Adam(student.policy.parameters(), lr=d.learning_rate)
    step = _resume(out / CHECKPOINT, student, optimizer)
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
    writer = SummaryWriter(str(out), purge_step=step + 1 if step else None)
    started = time.perf_counter()
    losses, step = _distill_loop(
        ctx, seed, step, teacher_model, teacher_rms, student, srms, optimizer, envs, windows, out, writer
    )
    wall = time.perf_counter() - started
    for env in envs:
        env.close()
    _finish_critics(student, critic_trained="critic_latent_loss" in losses)
    student.num_timesteps = step
    summary = {
        "teacher_policy": str(teacher),
        "steps": step,
        "wall_s": round(wall, 2),
        "started_from_teacher": copied,
        "untrained_source_return": untrained,
        "teacher_source_return": _source_return(ctx, seed, teacher_model, teacher_rms, None, loaded.make_env),
        "student_source_return": _source_return(ctx, seed, student, srms, scfg, make_source),
        "teacher_params": _actor_params(teacher_model),
        "student_params": _actor_params(student),
        "final_losses": losses,
    }
    atomic_write_text(
        json.dumps(summary, indent=1), out / SUMMARY
    )  # before the artifact: a rerun redoes both
    meta = {
        **_meta(context_for(ctx, scfg), STUDENT, seed, ctx.task.randomized_id, spaces_venv),
        "teacher": {"policy": str(teacher), "sha256": file_sha256(teacher)},
        "distill": d.model_dump(mode="json"),
    }
    save_policy(student, srms, meta, policy_path)
    writer.add_scalar("distill/teacher_source_return", summary["teacher_source_return"], step)
    writer.add_scalar("distill/student_source_return", summary["student_source_return"], step)
    writer.close()
    (out / CHECKPOINT).unlink(missing_ok=True)
    return policy_path


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


def _actor_params(model: BaseAlgorithm) -> int:
    """Parameters of what is deployed: the actor (features extractor, actor trunk, action head)."""
    policy = model.policy
    if isinstance(policy, ActorCriticPolicy):
        parts = [policy.pi_features_extractor, policy.mlp_extractor.policy_net, policy.action_net]
    else:
        parts = [getattr(policy, "actor")]  # noqa: B009
    return sum(p.numel() for part in parts for p in part.parameters())


def _resume(path: Path, student: BaseAlgorithm, optimizer: torch.optim.Optimizer) -> int:
    """The step a checkpointed distillation reached (its student and optimizer loaded), else 0."""
    if not path.exists():
        return 0
    data = safe_load(path)
    art.load_torch_state(student, data["states"], data["tensors"])
    optimizer.load_state_dict(data["optimizer"])
    log.info("distillation continues from step %d (%s)", data["step"], path)
    return int(data["step"])


def _distill_loop(
    ctx: Context,
    seed: int,
    step: int,
    teacher: BaseAlgorithm,
    teacher_rms: RunningMeanStd | None,
    student: BaseAlgorithm,
    srms: RunningMeanStd | None,
    optimizer: torch.optim.Optimizer,
    envs: list[gym.Env[Any, Any]],
    windows: list[Window],
    out: Path,
    writer: SummaryWriter,
) -> tuple[dict[str, float], int]:
    """Act (student or teacher, by the mixing schedule), label, learn; from `step` to `distill.steps`
    (in whole steps of every env). Returns the last losses and the step reached."""
    d = ctx.cfg.distill
    assert d is not None
    rng = np.random.default_rng([seed, step, 17])
    buffer = _Buffer(d.buffer, windows[0].space.shape[0], envs[0].observation_space.shape[0])  # type: ignore[index]
    teacher_obs, student_obs = [], []
    for i, (env, window) in enumerate(zip(envs, windows, strict=True)):
        obs, _ = env.reset(seed=DISTILL_SEED + 100_000 * seed + step + i)  # apart from evaluation seeds
        teacher_obs.append(obs)
        student_obs.append(window.reset(obs[: window.obs_dim]))
    returns = np.zeros(len(envs))
    finished: list[float] = []
    losses: dict[str, float] = {}
    next_train, next_save = step + d.train_every, step + ctx.cfg.checkpoint_every_steps
    while step < d.steps:
        t = normalize(np.stack(teacher_obs), teacher_rms)
        s = normalize(np.stack(student_obs), srms)
        buffer.add(s, t)
        beta = d.mixing.beta(step, d.steps)
        teacher_act, _ = teacher.predict(t, deterministic=True)
        student_act, _ = student.predict(s, deterministic=True)
        use_teacher = rng.random(len(envs)) < beta
        for i, (env, window) in enumerate(zip(envs, windows, strict=True)):
            action = teacher_act[i] if use_teacher[i] else student_act[i]
            obs, reward, terminated, truncated, _ = env.step(action)
            returns[i] += float(reward)
            if terminated or truncated:
                finished.append(returns[i])
                returns[i] = 0.0
                obs, _ = env.reset()
                student_obs[i] = window.reset(obs[: window.obs_dim])
            else:
                student_obs[i] = window.push(action, obs[: window.obs_dim])
            teacher_obs[i] = obs
        step += len(envs)
        if (step >= next_train or step >= d.steps) and buffer.n >= d.batch_size:
            next_train += d.train_every
            losses = _train(d, teacher, student, optimizer, buffer, rng, ctx.device)
            for key, value in losses.items():
                writer.add_scalar(f"distill/{key}", value, step)
            writer.add_scalar("distill/teacher_acts", beta, step)
            if finished:
                writer.add_scalar("distill/episode_return", float(np.mean(finished)), step)
                finished = []
        if step >= next_save and step < d.steps:
            next_save += ctx.cfg.checkpoint_every_steps
            states, tensors = art.torch_state(student)
            atomic_save(
                {
                    "format": art.FORMAT,
                    "kind": "distill_checkpoint",
                    "states": states,
                    "tensors": tensors,
                    "optimizer": optimizer.state_dict(),
                    "step": step,
                },
                out / CHECKPOINT,
            )
    return losses, step


def _train(
    d: DistillConfig,
    teacher: BaseAlgorithm,
    student: BaseAlgorithm,
    optimizer: torch.optim.Optimizer,
    buffer: _Buffer,
    rng: np.random.Generator,
    device: torch.device,
) -> dict[str, float]:
    """`updates` minibatch steps on action (+ latent, + value) losses; the last step's losses."""
    student.policy.set_training_mode(True)
    low = torch.as_tensor(teacher.action_space.low, device=device)  # type: ignore[attr-defined]
    high = torch.as_tensor(teacher.action_space.high, device=device)  # type: ignore[attr-defined]
    on_policy = isinstance(student.policy, ActorCriticPolicy)
    action_loss = F.mse_loss if d.loss == "mse" else F.smooth_l1_loss
    out: dict[str, float] = {}
    for _ in range(d.updates):
        s_np, t_np = buffer.sample(rng, d.batch_size)
        s, t = torch.as_tensor(s_np, device=device), torch.as_tensor(t_np, device=device)
        with torch.no_grad():
            label = _outputs(teacher, t, value=on_policy and d.value_weight > 0)
            target = label.action.clamp(low, high) if on_policy else label.action
        mine = _outputs(student, s, value=on_policy and d.value_weight > 0)
        loss = action_loss(mine.action, target)
        out["action_loss"] = float(loss.detach())
        if d.latent_weight > 0 and mine.latent is not None and label.latent is not None:
            latent = F.mse_loss(mine.latent, label.latent)
            loss = loss + d.latent_weight * latent
            out["latent_loss"] = float(latent.detach())
        critic, teacher_critic = _critics(student), _critics(teacher)
        if d.latent_weight > 0 and critic is not None and teacher_critic is not None:
            mine_z, their_z = _critic_latent(critic, s), _critic_latent(teacher_critic, t)
            if mine_z is not None and their_z is not None:  # SAC: the critic's own encoder learns its z
                latent = F.mse_loss(mine_z, their_z.detach())
                loss = loss + d.latent_weight * latent
                out["critic_latent_loss"] = float(latent.detach())
        if mine.value is not None and label.value is not None:
            value = F.mse_loss(mine.value, label.value) / (label.value.var() + 1e-6)
            loss = loss + d.value_weight * value
            out["value_loss"] = float(value.detach())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.policy.parameters(), 10.0)
        optimizer.step()
    student.policy.set_training_mode(False)
    return out


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


def transfer_student(ctx: Context, student: Path, seed: int) -> None:
    """The student on the target: zero-shot, then fine-tuned like any policy (the same yardstick)."""
    sctx = student_context(ctx, student)
    zero_shot(sctx, student, seed, "zeroshot_student")
    finetune(sctx, student, seed, "finetune_student")


def distill_seed(ctx: Context, seed: int) -> None:
    """Every distillation stage of one seed: teacher, student, the student on the target."""
    teacher = pretrain_teacher(ctx, seed)
    transfer_student(ctx, distill_student(ctx, teacher, seed), seed)
