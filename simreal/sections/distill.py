"""The `distill:` block: a privileged teacher, the student that sees only what the robot sees, and how
one is distilled into the other (see `simreal.training.methods.distill.stages`).

    distill:
      teacher: {net_arch: {pi: [64, 64], vf: [64, 64]}, encoder: [64], latent_dim: 8}
      student: {history: 16, encoder: conv}
      steps: 30000                      # distillation env steps in the randomized sim
      loss: mse                         # on actions: mse | huber
      latent_weight: 1.0                # RMA's loss on the teacher's latent z
      mixing: {start: 1.0, end: 0.0, fraction: 0.5}   # P(teacher acts), DAgger-style
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from simreal.schema import Spec
from simreal.sections.core import AlgoConfig

SUPPORTED_ALGOS = ("PPO", "A2C", "SAC")  # what distillation can label and train


class TeacherConfig(Spec):
    """The privileged teacher: the experiment's algorithm with an environment-factor encoder.

    `net_arch` defaults to `algo.net_arch`; `timesteps` (its pretraining) to `pretrain.timesteps`;
    `encoder` are the hidden layers from the privileged values to the latent z."""

    net_arch: list[int] | dict[str, list[int]] | None = None
    """The teacher's hidden layers (None: `algo.net_arch`)."""
    encoder: list[int] = Field(default=[64])
    """Hidden layers of the encoder from the privileged values to the latent z."""
    latent_dim: int = Field(default=8, ge=1, le=256)
    """Size of the latent z the encoder outputs."""
    timesteps: int | None = Field(default=None, ge=1)
    """The teacher's pretraining steps in the randomized sim (None: `pretrain.timesteps`)."""


class StudentConfig(Spec):
    """The student: the last `history` (observation, action) pairs through a 1-D convolution (`conv`)
    or a GRU (`gru`) of `channels` to an estimate of z, then a policy head of `net_arch` (default: the
    teacher's, whose weights it starts from; a smaller one gives a small policy for the robot)."""

    history: int = Field(default=16, ge=1, le=256)
    """The last k (observation, action) pairs the student reads."""
    encoder: Literal["conv", "gru"] = "conv"
    """What reads the history: a 1-D convolution (`conv`) or a GRU (`gru`)."""
    channels: int = Field(default=32, ge=1)
    """Width of the history encoder: its convolution channels or GRU hidden size."""
    net_arch: list[int] | dict[str, list[int]] | None = None
    """The student's policy head (None: the teacher's, whose weights it starts from)."""


class MixingConfig(Spec):
    """Who acts while distilling (DAgger): the teacher with probability `start`, falling linearly to
    `end` over the first `fraction` of the steps. The teacher labels every step either way."""

    start: float = Field(default=1.0, ge=0, le=1)
    """P(teacher acts) at the first distillation step."""
    end: float = Field(default=0.0, ge=0, le=1)
    """P(teacher acts) once `fraction` of the steps have passed."""
    fraction: float = Field(default=0.5, gt=0, le=1)
    """Share of the distillation steps over which P(teacher acts) falls linearly from `start` to `end`."""

    def beta(self, step: int, total: int) -> float:
        """P(teacher acts) at distillation step `step` of `total`."""
        progress = min(1.0, step / max(1.0, self.fraction * total))
        return self.start + (self.end - self.start) * progress


class DistillConfig(Spec):
    """Online distillation of a privileged teacher into a history-based student."""

    teacher: TeacherConfig = TeacherConfig()
    """The privileged teacher."""
    student: StudentConfig = StudentConfig()
    """The student, which sees only what the robot sees."""
    steps: int = Field(ge=1)
    """Distillation env steps in the randomized sim, all envs together (no target steps)."""
    loss: Literal["mse", "huber"] = "mse"
    """Loss on the teacher's actions: `mse` or `huber`."""
    latent_weight: float = Field(default=1.0, ge=0)
    """Weight of the loss on the teacher's latent z (RMA's)."""
    value_weight: float = Field(default=0.5, ge=0)
    """Weight of the loss on the teacher's value (PPO, A2C) or its critics' Q-values (SAC)."""
    mixing: MixingConfig = MixingConfig()
    """Who acts while distilling (DAgger)."""
    n_envs: int = Field(default=8, ge=1)
    """Randomized-sim envs stepped side by side while distilling."""
    batch_size: int = Field(default=256, ge=1)
    """Labelled rows per minibatch."""
    learning_rate: float = Field(default=1e-3, gt=0)
    """Adam learning rate of the student."""
    train_every: int = Field(default=1024, ge=1)
    """Env steps (all envs together) between two training rounds."""
    updates: int = Field(default=32, ge=1)
    """Minibatch updates per training round."""
    buffer: int = Field(default=100_000, ge=1)
    """Most recent labelled rows kept for training (the oldest are overwritten)."""
    holdout: float = Field(default=0.1, ge=0, lt=1)
    """Share of episodes whose labelled rows are kept out of training, to score the student on (0: none)."""

    @model_validator(mode="after")
    def _buffer_holds_a_batch(self) -> DistillConfig:
        if self.buffer < self.batch_size:
            raise ValueError(f"buffer: {self.buffer} holds less than one batch of {self.batch_size}")
        return self

    def check(self, exp: Any) -> None:
        """What distillation needs of the rest of the experiment (the env's privileged values are checked
        by preflight, which builds it)."""
        algo = exp.algo
        if algo.name not in SUPPORTED_ALGOS:
            raise ValueError(
                f"distill: not for algo.name {algo.name} yet (allowed: {', '.join(SUPPORTED_ALGOS)})"
            )
        if exp.pixels and exp.perception is None:
            raise ValueError(
                "distill: a camera student needs a perception: section (its backbone: cached features, or "
                "a CNN trained end to end with cache_features: false)"
            )
        if algo.policy != "MlpPolicy":
            raise ValueError(f"distill: algo.policy {algo.policy} (allowed: MlpPolicy)")
        if "features_extractor_class" in algo.policy_extra:
            raise ValueError(
                "distill: algo.policy_extra.features_extractor_class is set, but teacher and student bring "
                "their own extractors (allowed: leave it unset)"
            )
        if exp.observation.privileged or exp.observation.history_window:
            raise ValueError(
                "observation.privileged / history_window: set by distill for its teacher and student "
                "(allowed: leave them unset)"
            )
        if "squash_output" in algo.policy_extra:
            raise ValueError("distill: algo.policy_extra.squash_output is not supported (allowed: unset)")
        head = self.student.net_arch or self.teacher.net_arch or algo.net_arch
        depth = AlgoConfig(name=algo.name, net_arch=head).hidden_layers
        finetune = exp.finetune
        frozen = [finetune.freeze_layers]
        if finetune.auto is not None:
            frozen += [int(v) for v in finetune.auto.candidates.get("freeze_layers", [])]
        if max(frozen) > depth:
            raise ValueError(
                f"distill: the student's policy head has {depth} hidden layers, but fine-tuning may freeze "
                f"{max(frozen)} (finetune.freeze_layers / auto candidates) (allowed: at most {depth})"
            )
