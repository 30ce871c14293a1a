"""The sections of an experiment config: the algorithm, pretraining, fine-tuning, evaluation, reference.

`simreal.config.ExperimentConfig` composes them (and checks what involves more than one section); they
are importable from `simreal.config` as well.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from agents.algorithms import check_algo_kwargs, default_learning_rate, policy_kwargs_from
from simreal.schema import Spec


class AlgoConfig(Spec):
    """Which SB3 algorithm, its network and its constructor arguments. `vec_env: subproc` steps the
    `n_envs` source-sim envs of pretraining in their own processes (SB3's `SubprocVecEnv`); target stages
    always step in the stage's process, where their steps are counted."""

    name: str = "PPO"
    policy: str = "MlpPolicy"
    learning_rate: float | None = Field(default=None, gt=0)
    net_arch: list[int] | dict[str, list[int]] | None = None
    activation: str | None = None
    kwargs: dict[str, Any] = {}
    policy_extra: dict[str, Any] = {}
    n_envs: int = Field(default=1, ge=1)
    vec_env: Literal["dummy", "subproc"] = "dummy"
    normalize_obs: bool = False

    @model_validator(mode="after")
    def _check(self) -> AlgoConfig:
        try:
            check_algo_kwargs(self.name, self.kwargs)
            policy_kwargs_from(self.net_arch, self.activation)
        except ValueError as err:
            raise ValueError(str(err).removeprefix("algo.")) from None
        return self

    @property
    def hidden_layers(self) -> int:
        """Hidden layers of the shallowest actor or critic trunk (SB3's defaults have two)."""
        if self.net_arch is None:
            return 2
        if isinstance(self.net_arch, list):
            return len(self.net_arch)
        return min(len(layers) for layers in self.net_arch.values()) if self.net_arch else 2

    @property
    def pretrain_lr(self) -> float:
        return self.learning_rate if self.learning_rate is not None else default_learning_rate(self.name)

    def policy_kwargs(self) -> dict[str, Any]:
        return policy_kwargs_from(self.net_arch, self.activation, self.policy_extra)


class PretrainConfig(Spec):
    """Pretraining in the randomized sim (and a nominal baseline). `algo_kwargs` override `algo.kwargs`
    for pretraining only - e.g. the short rollouts and large minibatches of thousands of batched worlds
    (`sim_backend: warp`), while fine-tuning on one target env keeps `algo.kwargs`."""

    timesteps: int = Field(ge=1)
    nominal_baseline: bool = True
    algo_kwargs: dict[str, Any] = {}


SEARCHABLE = ("learning_rate", "lr_factor", "freeze_layers", "l2sp", "layer_lr_decay")
"""Fine-tuning settings `finetune.auto` can choose among."""


class AutoConfig(Spec):
    """Budget-aware choice of fine-tuning settings: successive halving over `candidates` (every
    combination) on the target, within `budget_fraction` of the target budget; the winner continues from
    its own weights for the rest. Every candidate's steps count against the budget."""

    candidates: dict[
        Literal["learning_rate", "lr_factor", "freeze_layers", "l2sp", "layer_lr_decay"], list[float]
    ]
    budget_fraction: float = Field(default=0.2, gt=0, lt=1)

    @field_validator("candidates")
    @classmethod
    def _some(cls, value: dict[str, list[int | float]]) -> dict[str, list[int | float]]:
        if not value or any(not v for v in value.values()):
            raise ValueError(f"give at least one value for at least one of {', '.join(SEARCHABLE)}")
        return value

    def settings(self) -> list[dict[str, int | float]]:
        """Every combination of the candidate values, in a fixed order."""
        combos: list[dict[str, int | float]] = [{}]
        for key, values in self.candidates.items():
            combos = [{**c, key: v} for c in combos for v in values]
        return combos


class FinetuneConfig(Spec):
    """How the pretrained policy is transferred and fine-tuned on the target, and what guards it.

    Guards (see `simreal.training.guards`): `critic_warmup_steps` (critics learn first, the actor held),
    `l2sp` (pull toward the pretrained weights), `layer_lr_decay` (lower layers move less),
    `unfreeze_schedule` (target steps at which the frozen layers thaw, the top one first), `keep_best`
    (deploy the best evaluated policy, never worse than where fine-tuning started) with `patience`
    (stop after that many evaluations without improvement). `learning_starts` (SAC, TD3): target
    transitions collected before the first update, default one batch; the pretrained policy acts from
    the first step (SB3's random-action warm-up is for a policy that knows nothing)."""

    timesteps: int = Field(ge=1)
    learning_rate: float | None = Field(default=None, gt=0)
    lr_factor: float = Field(default=0.1, gt=0)
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"
    lr_warmup_fraction: float = Field(default=0.0, ge=0, lt=1)
    freeze_features: bool = True
    freeze_layers: int = Field(default=0, ge=0)
    reinit_heads: bool = False
    obs_norm: Literal["keep", "reestimate", "reset"] = "keep"
    reset_entropy: bool = False
    allow_cross_task: bool = False
    critic_warmup_steps: int = Field(default=0, ge=0)
    l2sp: float = Field(default=0.0, ge=0)
    layer_lr_decay: float = Field(default=1.0, gt=0, le=1)
    unfreeze_schedule: list[int] = []
    keep_best: bool = False
    patience: int | None = Field(default=None, ge=1)
    auto: AutoConfig | None = None
    learning_starts: int | None = Field(default=None, ge=0)
    n_envs: int | None = Field(default=None, ge=1)
    """Target envs of the target stages (default: `algo.n_envs`; 1 with `sim_backend: warp`)."""

    @field_validator("unfreeze_schedule")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        if any(s < 1 for s in value) or any(b <= a for a, b in zip(value, value[1:], strict=False)):
            raise ValueError(f"must be increasing target steps >= 1, got {value}")
        return value

    @model_validator(mode="after")
    def _patience_keeps_best(self) -> FinetuneConfig:
        if self.patience is not None and not self.keep_best:
            raise ValueError("patience: stops early and deploys the best evaluation - set keep_best: true")
        if len(self.unfreeze_schedule) > self.freeze_layers:
            raise ValueError(
                f"unfreeze_schedule: {len(self.unfreeze_schedule)} thaws but only {self.freeze_layers} "
                "frozen layers (allowed: at most freeze_layers entries)"
            )
        return self


class EvalConfig(Spec):
    """Evaluation on the target: a curve during target training and a final measurement.

    Every variant is evaluated on the same episode seeds at the same steps. `success_return`: an absolute
    return that means "good" on this target (e.g. 900 for the pendulum); without it, the reference
    stage's return does. The sample-efficiency threshold is `threshold_fraction` of the way from the
    untrained policy's return to that reference. `count_in_budget`: evaluation episodes (and any other
    target interaction) are part of the target budget, so a robot with N steps to give spends at most N
    per variant and seed; training gets what is left after reserving the evaluations' worst case.
    `n_envs`: target instances an evaluation runs side by side, the policy acting on one batch per step
    (the same returns as one instance on the same seeds); default 4 for pixel policies (one backbone
    batch per step), else 1; always 1 on an exclusive target."""

    every_steps: int = Field(default=2000, ge=1)
    n_envs: int | None = Field(default=None, ge=1, le=64)
    episodes: int = Field(default=5, ge=1)
    final_episodes: int = Field(default=10, ge=1)
    threshold_fraction: float = Field(default=0.9, gt=0, le=1)
    success_return: float | None = None
    count_in_budget: bool = False


class ReferenceConfig(Spec):
    """Scratch on the target for much longer than the fine-tuning budget: what a target-trained policy
    reaches, so the threshold means "good", and scratch gets the chance to get there.

    `timesteps` defaults to 10x `finetune.timesteps`, `every_steps` (its evaluation cadence) to 4x
    `evaluation.every_steps`: a converged policy's episodes are long, and evaluating it as often as the
    short variants would cost more target steps than training it. Reference stages are kept under
    `<output_dir>/references/` keyed by everything that determines them, and reused by later runs."""

    timesteps: int | None = Field(default=None, ge=1)
    every_steps: int | None = Field(default=None, ge=1)
