"""How a student learns from its teacher: the DAgger loop, the losses, the label buffer, and what the
student takes from the teacher before it starts (`simreal.training.methods.distill.stages` runs it as a
stage).

The student acts (or the teacher, with probability `mixing.beta`), the teacher labels every step, and
every `train_every` steps the student takes `updates` minibatch steps on the teacher's actions (MSE or
Huber), its latent z (RMA's adaptation module; SAC's critic too) and its value (PPO, A2C).
"""

from __future__ import annotations

import json
import logging
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
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.running_mean_std import RunningMeanStd
from torch.utils.tensorboard import SummaryWriter

from agents.students import LatentExtractor
from simreal.sections.distill import DistillConfig
from simreal.simulation.privileged import Window
from simreal.training.engine import artifacts as art
from simreal.training.engine.artifacts import atomic_save, atomic_write_text, safe_load
from simreal.training.engine.context import Context
from simreal.training.engine.evaluation import normalize

log = logging.getLogger("simreal")

CHECKPOINT = "distill_checkpoint.pt"
SUMMARY = "distill.json"
DISTILL_SEED = 10_000_000
OVERFIT_RATIO = 3.0  # held-out / training action loss above which `warn_overfitting` speaks


@dataclass
class Outputs:
    action: torch.Tensor
    latent: torch.Tensor | None
    value: torch.Tensor | None


def outputs(model: BaseAlgorithm, obs: Any, value: bool = True) -> Outputs:
    """The deterministic action (PPO/A2C: the Gaussian's mean; SAC: tanh of it, in [-1, 1]), the latent
    z of a latent extractor and (on-policy) the value of a batch of (normalized) observations - a tensor,
    or a Dict of them with uint8 frames (preprocessed as SB3 does: images to [0, 1])."""
    policy = model.policy
    obs = preprocess_obs(obs, policy.observation_space, normalize_images=policy.normalize_images)
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
    return Outputs(action, latent, v)


def critic_latent(critic: Any, obs: Any) -> torch.Tensor | None:
    extractor = critic.features_extractor
    return extractor.latent(obs) if isinstance(extractor, LatentExtractor) else None


def q_values(critic: Any, obs: Any, actions: list[torch.Tensor]) -> torch.Tensor:
    """SAC's critics on `obs` at each batch of `actions` (the features computed once): shape (critics,
    len(actions) x batch, 1). A critic that shares the actor's extractor gets no gradient into it."""
    features = critic.extract_features(obs, critic.features_extractor)
    if critic.share_features_extractor:
        features = features.detach()
    inputs = torch.cat([torch.cat([features, a], dim=1) for a in actions])
    return torch.stack([q(inputs) for q in critic.q_networks])


def critic_loss(
    critic: Any, teacher_critic: Any, s: Any, t: torch.Tensor, teacher_action: torch.Tensor, own: torch.Tensor
) -> torch.Tensor:
    """SAC: the student's Q-values against the teacher's, at the teacher's action, the student's own and
    another row's teacher action (the batch rolled by one: an action off this state's optimum), relative
    to the labels' second moment as the value loss. Without it the student's critics start fine-tuning
    untrained (on the KukaReach camera student this alone did not keep fine-tuning above zero-shot)."""
    actions = [teacher_action, own.detach(), teacher_action.roll(1, dims=0)]
    with torch.no_grad():
        label = q_values(teacher_critic, t, actions)
    mine = q_values(critic, s, actions)
    if label.shape[0] != mine.shape[0]:  # another number of critics: each learns the teacher's mean
        label = label.mean(dim=0, keepdim=True).expand_as(mine)
    return F.mse_loss(mine, label) / (label.pow(2).mean() + 1e-6)


def copy_head(teacher: BaseAlgorithm, student: BaseAlgorithm) -> str:
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


def critics(model: BaseAlgorithm) -> Any:
    """SAC's critic (its own features extractor), or None for actor-critic policies."""
    return None if isinstance(model.policy, ActorCriticPolicy) else getattr(model.policy, "critic", None)


def distills_critics(d: DistillConfig, teacher: BaseAlgorithm, student: BaseAlgorithm) -> bool:
    """SAC: whether `train` teaches the student's critics the teacher's Q-values (`value_weight` > 0 and
    both have critics) - decided by the setup, so a resumed run that trains no more says the same."""
    return d.value_weight > 0 and critics(student) is not None and critics(teacher) is not None


def finish_critics(student: BaseAlgorithm, critic_trained: bool) -> None:
    """SAC: where distillation trained neither the critics (`distills_critics`) nor their own history
    encoder (a teacher without a latent), the critic's extractor takes the actor's; the target critic
    starts equal to the critic, as in SB3."""
    critic = critics(student)
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


Rows = np.ndarray | dict[str, np.ndarray]
"""A batch of student observations: a float array, or a Dict of arrays (an end-to-end camera student's
uint8 frames and the entries beside them)."""


def take(rows: Rows, index: Any) -> Rows:
    """The rows at `index` (a mask or indices) of an array or of every entry of a Dict."""
    return {k: v[index] for k, v in rows.items()} if isinstance(rows, dict) else rows[index]


class LabelBuffer:
    """The most recent `size` (student observation, teacher observation) pairs, normalized."""

    def __init__(self, size: int, student_dim: int, teacher_dim: int) -> None:
        self.student = np.zeros((size, student_dim), dtype=np.float32)
        self.teacher = np.zeros((size, teacher_dim), dtype=np.float32)
        self.size, self.n, self.at = size, 0, 0

    def add(self, student: Rows, teacher: np.ndarray) -> None:
        assert isinstance(student, np.ndarray)
        idx = (self.at + np.arange(len(student))) % self.size  # one row per env, oldest overwritten
        self.student[idx], self.teacher[idx] = student, teacher
        self.at = int((self.at + len(student)) % self.size)
        self.n = min(self.n + len(student), self.size)

    def sample(self, rng: np.random.Generator, batch: int) -> tuple[Rows, np.ndarray]:
        idx = rng.integers(0, self.n, size=min(batch, self.n))
        return self.student[idx], self.teacher[idx]


class Holdout:
    """Which envs' current episodes are held out of training (each episode drawn with `fraction`), and the
    buffer their rows go to: the student is scored on them, never trained on them."""

    def __init__(self, fraction: float, n_envs: int, buffer: LabelBuffer, rng: np.random.Generator) -> None:
        self.fraction, self.buffer, self.rng = fraction, buffer, rng
        self.held = np.zeros(n_envs, dtype=bool)
        for i in range(n_envs):
            self.new_episode(i)

    def add(self, train: LabelBuffer, student: Rows, teacher: np.ndarray) -> None:
        """One row per env: the held-out envs' to the holdout buffer, the others' to `train`."""
        keep = ~self.held
        if keep.any():
            train.add(take(student, keep), teacher[keep])
        if self.held.any():
            self.buffer.add(take(student, self.held), teacher[self.held])

    def new_episode(self, i: int) -> None:
        """Draw env `i`'s new episode (no draw with `fraction` 0: the loop's random stream is untouched)."""
        self.held[i] = self.fraction > 0 and self.rng.random() < self.fraction


def train_rows(d: DistillConfig) -> int:
    """Room for the training rows: `buffer`, or no more than one distillation can add (its steps, the
    last step's envs beyond them), so a buffer larger than the run reserves no memory it never uses."""
    return min(d.buffer, d.steps + d.n_envs)


def holdout_rows(d: DistillConfig) -> int:
    """Room for the held-out rows: their share of `buffer`, at least a batch."""
    return max(d.batch_size, int(d.buffer * d.holdout))


def warn_overfitting(losses: dict[str, float]) -> None:
    """A log line when the student's action loss on held-out episodes is several times its training
    loss: it has learned the episodes it saw rather than the task (too few distinct episodes, or a
    perception whose features do not carry over between them)."""
    train, held = losses.get("action_loss"), losses.get("holdout_action_loss")
    if train is not None and held is not None and held > OVERFIT_RATIO * max(train, 1e-8):
        log.warning(
            "distill: the student's action loss on held-out episodes is %.4f, %.1fx its training loss "
            "%.4f - it fits the episodes it trained on, not new ones (more distinct episodes: "
            "distill.steps or n_envs; or a perception that carries over between episodes)",
            held,
            held / max(train, 1e-8),
            train,
        )


class Cadence:
    """When a DAgger loop learns, logs and checkpoints: every `train_every` env steps (and at the last)
    once the buffer holds a batch, every `checkpoint_every_steps` before the end; the finished episodes'
    mean return goes to TensorBoard with each update."""

    def __init__(self, d: DistillConfig, checkpoint_every: int, step: int, writer: SummaryWriter) -> None:
        self.d, self.writer = d, writer
        self.every_save = checkpoint_every
        self.next_train, self.next_save = step + d.train_every, step + checkpoint_every
        self.finished: list[float] = []
        self.losses: dict[str, float] = {}

    def tick(
        self,
        step: int,
        beta: float,
        ready: bool,
        learn: Callable[[], dict[str, float]],
        save: Callable[[int], None],
    ) -> None:
        """After the env steps that reached `step` (`beta`: P(teacher acts) then; `ready`: a batch)."""
        if (step >= self.next_train or step >= self.d.steps) and ready:
            self.next_train += self.d.train_every
            self.losses = learn()
            for key, value in self.losses.items():
                self.writer.add_scalar(f"distill/{key}", value, step)
            self.writer.add_scalar("distill/teacher_acts", beta, step)
            if self.finished:
                self.writer.add_scalar("distill/episode_return", float(np.mean(self.finished)), step)
                self.finished = []
        if step >= self.next_save and step < self.d.steps:
            self.next_save += self.every_save
            save(step)


def save_checkpoint(
    path: Path, student: BaseAlgorithm, optimizer: torch.optim.Optimizer, step: int, **extra: Any
) -> None:
    """The student, its optimizer and the step reached (and `extra`, e.g. normalization statistics)."""
    states, tensors = art.torch_state(student)
    atomic_save(
        {
            "format": art.FORMAT,
            "kind": "distill_checkpoint",
            "states": states,
            "tensors": tensors,
            "optimizer": optimizer.state_dict(),
            "step": step,
            **extra,
        },
        path,
    )


def write_student(
    out: Path,
    summary: dict[str, Any],
    meta: dict[str, Any],
    student: BaseAlgorithm,
    rms: RunningMeanStd | None,
    writer: SummaryWriter,
    backbone: dict[str, torch.Tensor] | None = None,
) -> Path:
    """`distill.json`, then the student artifact (a rerun redoes both), the returns in TensorBoard; the
    checkpoint goes. Returns the artifact's path."""
    atomic_write_text(json.dumps(summary, indent=1), out / SUMMARY)
    art.save_policy(student, rms, meta, out / "policy.pt", backbone=backbone)
    for key in ("teacher_source_return", "student_source_return"):
        writer.add_scalar(f"distill/{key}", summary[key], summary["steps"])
    writer.close()
    (out / CHECKPOINT).unlink(missing_ok=True)
    return out / "policy.pt"


def actor_params(model: BaseAlgorithm) -> int:
    """Parameters of what is deployed: the actor (features extractor, actor trunk, action head)."""
    policy = model.policy
    if isinstance(policy, ActorCriticPolicy):
        parts = [policy.pi_features_extractor, policy.mlp_extractor.policy_net, policy.action_net]
    else:
        parts = [getattr(policy, "actor")]  # noqa: B009
    return sum(p.numel() for part in parts for p in part.parameters())


def resume(
    path: Path,
    student: BaseAlgorithm,
    optimizer: torch.optim.Optimizer,
    extra: Callable[[dict[str, Any]], None] | None = None,
) -> int:
    """The step a checkpointed distillation reached (its student and optimizer loaded, and `extra` given
    the checkpoint for what `save_checkpoint` stored beside them), else 0."""
    if not path.exists():
        return 0
    data = safe_load(path)
    art.load_torch_state(student, data["states"], data["tensors"])
    optimizer.load_state_dict(data["optimizer"])
    if extra is not None:
        extra(data)
    log.info("distillation continues from step %d (%s)", data["step"], path)
    return int(data["step"])


def distill_loop(
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
    dims = windows[0].space.shape[0], envs[0].observation_space.shape[0]  # type: ignore[index]
    buffer = LabelBuffer(train_rows(d), *dims)
    holdout = Holdout(d.holdout, len(envs), LabelBuffer(holdout_rows(d), *dims), rng)
    teacher_obs, student_obs = [], []
    for i, (env, window) in enumerate(zip(envs, windows, strict=True)):
        obs, _ = env.reset(seed=DISTILL_SEED + 100_000 * seed + step + i)  # apart from evaluation seeds
        teacher_obs.append(obs)
        student_obs.append(window.reset(obs[: window.obs_dim]))
    returns = np.zeros(len(envs))
    cadence = Cadence(d, ctx.cfg.checkpoint_every_steps, step, writer)
    while step < d.steps:
        t = normalize(np.stack(teacher_obs), teacher_rms)
        s = normalize(np.stack(student_obs), srms)
        holdout.add(buffer, s, t)
        beta = d.mixing.beta(step, d.steps)
        teacher_act, _ = teacher.predict(t, deterministic=True)
        student_act, _ = student.predict(s, deterministic=True)
        use_teacher = rng.random(len(envs)) < beta
        for i, (env, window) in enumerate(zip(envs, windows, strict=True)):
            action = teacher_act[i] if use_teacher[i] else student_act[i]
            obs, reward, terminated, truncated, _ = env.step(action)
            returns[i] += float(reward)
            if terminated or truncated:
                cadence.finished.append(returns[i])
                returns[i] = 0.0
                obs, _ = env.reset()
                holdout.new_episode(i)
                student_obs[i] = window.reset(obs[: window.obs_dim])
            else:
                student_obs[i] = window.push(action, obs[: window.obs_dim])
            teacher_obs[i] = obs
        step += len(envs)
        cadence.tick(
            step,
            beta,
            buffer.n >= d.batch_size,
            lambda: train(d, teacher, student, optimizer, buffer, rng, ctx.device, holdout.buffer),
            lambda at: save_checkpoint(out / CHECKPOINT, student, optimizer, at),
        )
    return cadence.losses, step


def student_batch(student: BaseAlgorithm, rows: Rows) -> Any:
    """Sampled rows as the student's policy reads them: tensors on its device, frames transposed to the
    channel order SB3 gave its image spaces (as `predict` does)."""
    return student.policy.obs_to_tensor(rows)[0]


def train(
    d: DistillConfig,
    teacher: BaseAlgorithm,
    student: BaseAlgorithm,
    optimizer: torch.optim.Optimizer,
    buffer: LabelBuffer,
    rng: np.random.Generator,
    device: torch.device,
    held: LabelBuffer | None = None,
) -> dict[str, float]:
    """`updates` minibatch steps on action (+ latent, + value) losses; the last step's losses, and the
    action loss on (up to 4 batches of) the `held`-out rows."""
    student.policy.set_training_mode(True)
    low = torch.as_tensor(teacher.action_space.low, device=device)  # type: ignore[attr-defined]
    high = torch.as_tensor(teacher.action_space.high, device=device)  # type: ignore[attr-defined]
    on_policy = isinstance(student.policy, ActorCriticPolicy)
    action_loss = F.mse_loss if d.loss == "mse" else F.smooth_l1_loss
    out: dict[str, float] = {}
    for _ in range(d.updates):
        s_np, t_np = buffer.sample(rng, d.batch_size)
        s, t = student_batch(student, s_np), torch.as_tensor(t_np, device=device)
        with torch.no_grad():
            label = outputs(teacher, t, value=on_policy and d.value_weight > 0)
            target = label.action.clamp(low, high) if on_policy else label.action
        mine = outputs(student, s, value=on_policy and d.value_weight > 0)
        loss = action_loss(mine.action, target)
        out["action_loss"] = float(loss.detach())
        if d.latent_weight > 0 and mine.latent is not None and label.latent is not None:
            latent = F.mse_loss(mine.latent, label.latent)
            loss = loss + d.latent_weight * latent
            out["latent_loss"] = float(latent.detach())
        critic, teacher_critic = critics(student), critics(teacher)
        if d.latent_weight > 0 and critic is not None and teacher_critic is not None:
            mine_z, their_z = critic_latent(critic, s), critic_latent(teacher_critic, t)
            if mine_z is not None and their_z is not None:  # SAC: the critic's own encoder learns its z
                latent = F.mse_loss(mine_z, their_z.detach())
                loss = loss + d.latent_weight * latent
                out["critic_latent_loss"] = float(latent.detach())
        if mine.value is not None and label.value is not None:
            # Relative to the labels' second moment: bounded at the start (a critic at 0 scores 1), where
            # dividing by their variance exploded for a teacher whose values are all alike (one that
            # balances: ~1 / (1 - gamma) everywhere) and swamped the action loss in a shared extractor.
            value = F.mse_loss(mine.value, label.value) / (label.value.pow(2).mean() + 1e-6)
            loss = loss + d.value_weight * value
            out["value_loss"] = float(value.detach())
        if distills_critics(d, teacher, student):
            q = critic_loss(critic, teacher_critic, s, t, label.action, mine.action)
            loss = loss + d.value_weight * q
            out["critic_loss"] = float(q.detach())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.policy.parameters(), 10.0)
        optimizer.step()
    student.policy.set_training_mode(False)
    if held is not None and held.n > 0:
        s_np, t_np = held.sample(rng, 4 * d.batch_size)
        with torch.no_grad():
            s, t = student_batch(student, s_np), torch.as_tensor(t_np, device=device)
            label = outputs(teacher, t, value=False)
            target = label.action.clamp(low, high) if on_policy else label.action
            out["holdout_action_loss"] = float(action_loss(outputs(student, s, value=False).action, target))
    return out
