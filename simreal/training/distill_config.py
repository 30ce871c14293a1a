"""The `distill:` block: a privileged teacher, the student that sees only what the robot sees, and how
one is distilled into the other (see `simreal.training.distill`).

    distill:
      teacher: {net_arch: {pi: [64, 64], vf: [64, 64]}, encoder: [64], latent_dim: 8}
      student: {history: 16, encoder: conv}
      steps: 30000                      # distillation env steps in the randomized sim
      loss: mse                         # on actions: mse | huber
      latent_weight: 1.0                # RMA's loss on the teacher's latent z
      mixing: {start: 1.0, end: 0.0, fraction: 0.5}   # P(teacher acts), DAgger-style
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from simreal.schema import Spec

SUPPORTED_ALGOS = ("PPO", "A2C", "SAC")  # what distillation can label and train


class TeacherConfig(Spec):
    """The privileged teacher: the experiment's algorithm with an environment-factor encoder.

    `net_arch` defaults to `algo.net_arch`; `timesteps` (its pretraining) to `pretrain.timesteps`;
    `encoder` are the hidden layers from the privileged values to the latent z."""

    net_arch: list[int] | dict[str, list[int]] | None = None
    encoder: list[int] = Field(default=[64])
    latent_dim: int = Field(default=8, ge=1, le=256)
    timesteps: int | None = Field(default=None, ge=1)


class StudentConfig(Spec):
    """The student: the last `history` (observation, action) pairs through a 1-D convolution (`conv`)
    or a GRU (`gru`) of `channels` to an estimate of z, then a policy head of `net_arch` (default: the
    teacher's, whose weights it starts from; a smaller one gives a small policy for the robot)."""

    history: int = Field(default=16, ge=1, le=256)
    encoder: Literal["conv", "gru"] = "conv"
    channels: int = Field(default=32, ge=1)
    net_arch: list[int] | dict[str, list[int]] | None = None


class MixingConfig(Spec):
    """Who acts while distilling (DAgger): the teacher with probability `start`, falling linearly to
    `end` over the first `fraction` of the steps. The teacher labels every step either way."""

    start: float = Field(default=1.0, ge=0, le=1)
    end: float = Field(default=0.0, ge=0, le=1)
    fraction: float = Field(default=0.5, gt=0, le=1)

    def beta(self, step: int, total: int) -> float:
        """P(teacher acts) at distillation step `step` of `total`."""
        progress = min(1.0, step / max(1.0, self.fraction * total))
        return self.start + (self.end - self.start) * progress


class DistillConfig(Spec):
    """Online distillation of a privileged teacher into a history-based student."""

    teacher: TeacherConfig = TeacherConfig()
    student: StudentConfig = StudentConfig()
    steps: int = Field(ge=1)
    loss: Literal["mse", "huber"] = "mse"
    latent_weight: float = Field(default=1.0, ge=0)
    # On the teacher's value (PPO, A2C) or its critics' Q-values (SAC: `dagger.critic_loss`).
    value_weight: float = Field(default=0.5, ge=0)
    mixing: MixingConfig = MixingConfig()
    n_envs: int = Field(default=8, ge=1)
    batch_size: int = Field(default=256, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0)
    train_every: int = Field(default=1024, ge=1)
    updates: int = Field(default=32, ge=1)
    buffer: int = Field(default=100_000, ge=1)
    # Episodes whose labelled rows are kept out of training (drawn per episode): the student's action loss
    # on them (`distill/holdout_action_loss`) says how it does on episodes it never learned from.
    holdout: float = Field(default=0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _buffer_holds_a_batch(self) -> DistillConfig:
        if self.buffer < self.batch_size:
            raise ValueError(f"buffer: {self.buffer} holds less than one batch of {self.batch_size}")
        return self
