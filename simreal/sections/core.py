"""The sections of an experiment config: the algorithm, pretraining, fine-tuning, evaluation, reference.

`simreal.config.ExperimentConfig` composes them (and checks what involves more than one section); they
are importable from `simreal.config` as well.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from agents.algorithms import check_algo_kwargs, default_learning_rate, policy_kwargs_from
from simreal.schema import Spec
from simreal.sections.multitask import TaskEntry, check_multitask, entries


class AlgoConfig(Spec):
    """Which SB3 algorithm, its network and its constructor arguments. `vec_env: subproc` steps the
    `n_envs` source-sim envs of pretraining in their own processes (SB3's `SubprocVecEnv`); target stages
    always step in the stage's process, where their steps are counted."""

    name: str = "PPO"
    """SB3 or sb3-contrib algorithm by class name: PPO, A2C, SAC, TD3, TQC, CrossQ, ..."""
    policy: str = "MlpPolicy"
    """SB3 policy name (`MlpPolicy` becomes `MultiInputPolicy` for Dict observations), or `module:Class`
    naming a policy class."""
    learning_rate: float | None = Field(default=None, gt=0)
    """Pretraining learning rate (None: the algorithm's constructor default)."""
    net_arch: list[int] | dict[str, list[int]] | None = None
    """Hidden layers: one list for actor and critic, or per network (`{pi: [..], vf: [..]}`); None: SB3's."""
    activation: str | None = None
    """Hidden-layer activation: tanh, relu, elu, leaky_relu, gelu or silu (None: SB3's default)."""
    kwargs: dict[str, Any] = {}
    """Constructor arguments of the algorithm (e.g. `n_steps`, `batch_size`), checked against it."""
    policy_extra: dict[str, Any] = {}
    """More SB3 `policy_kwargs` (a `..._class` value as a `module:Class` string)."""
    n_envs: int = Field(default=1, ge=1)
    """Envs a stage steps at once (`sim_backend: warp`: pretraining's worlds); see `finetune.n_envs`."""
    vec_env: Literal["dummy", "subproc"] = "dummy"
    """`subproc`: pretraining's source-sim envs step in their own processes; `dummy`: all in-process."""
    normalize_obs: bool = False
    """Running standardization of the policy's input (SB3's `VecNormalize`; with a backbone: its features)."""

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

    def check(self, exp: Any) -> None:
        """Observation normalization must fit the observation kind; subprocess envs cannot share ADR."""
        perception = exp.perception
        cached = perception is not None and perception.cache_features
        if exp.pixels and self.normalize_obs and not cached:
            raise ValueError(
                "algo.normalize_obs: with pixels it normalizes cached backbone features "
                "(allowed: perception.cache_features: true; the backbone normalizes images itself)"
            )
        if perception is not None and perception.projection == "keypoints" and self.normalize_obs:
            raise ValueError(
                "algo.normalize_obs: it would normalize every cell of the cached grid on its own, which "
                "breaks perception.projection: keypoints (its filters are shared across cells and it "
                "standardizes channels itself; allowed: normalize_obs: false)"
            )
        if self.vec_env == "subproc" and exp.task.randomization.adr is not None:
            raise ValueError(
                "algo.vec_env: subproc envs cannot share randomization.adr's ranges, which every env of a "
                "run grows together (allowed: dummy with ADR)"
            )

    def policy_kwargs(self) -> dict[str, Any]:
        return policy_kwargs_from(self.net_arch, self.activation, self.policy_extra)


class PretrainConfig(Spec):
    """Pretraining in the randomized sim (and a nominal baseline). `algo_kwargs` override `algo.kwargs`
    for pretraining only - e.g. the short rollouts and large minibatches of thousands of batched worlds
    (`sim_backend: warp`), while fine-tuning on one target env keeps `algo.kwargs`."""

    timesteps: int = Field(ge=1)
    """Env steps of each pretraining stage in the source sim (all of its envs together)."""
    nominal_baseline: bool = True
    """Also pretrain on the nominal, unrandomized sim (stage `pretrain_nominal`), as a baseline."""
    algo_kwargs: dict[str, Any] = {}
    """Arguments over `algo.kwargs` for pretraining only (fine-tuning keeps `algo.kwargs`)."""
    tasks: list[TaskEntry] = []
    """Other tasks to pretrain one multi-task policy on (`pretrain_multitask`; the experiment's task is
    held out): packaged keys, task files or `{task, weight}` (see `multitask:`)."""

    @field_validator("tasks", mode="before")
    @classmethod
    def _entries(cls, value: Any) -> Any:
        return entries(value)

    def check(self, exp: Any) -> None:
        """`algo_kwargs` must be arguments of the experiment's algorithm."""
        try:
            check_algo_kwargs(exp.algo.name, self.algo_kwargs)
        except ValueError as err:
            raise ValueError(str(err).replace("algo.kwargs.", "pretrain.algo_kwargs.", 1)) from None
        check_multitask(exp)


SEARCHABLE = ("learning_rate", "lr_factor", "freeze_layers", "l2sp", "layer_lr_decay", "init")
"""Fine-tuning settings `finetune.auto` can choose among."""

INITS = ("pretrained", "scratch")
"""Where a `finetune.auto` candidate starts: the pretrained policy, or a fresh one (pretraining rate)."""


class AutoConfig(Spec):
    """Budget-aware choice of fine-tuning settings, raced on the target: every candidate (each
    combination of `candidates`) trains a round, all are evaluated on the same episodes, and a candidate
    is dropped once the leader beats it clearly on those paired episodes; rounds go on while more than
    one is left and the `budget_fraction` holds another. The winner continues from its own weights for
    the rest of the budget. `init: [pretrained, scratch]` adds a fresh policy at the pretraining rate, so
    negative transfer is detected and escaped. Every candidate's steps count against the budget."""

    candidates: dict[
        Literal["learning_rate", "lr_factor", "freeze_layers", "l2sp", "layer_lr_decay", "init"],
        list[float | str],
    ]
    """Values to try per setting; every combination of them is one candidate (`init: scratch` is one)."""
    budget_fraction: float = Field(default=0.2, gt=0, lt=1)
    """Share of the target budget the search may spend; the winner trains on for the rest."""
    episodes: int | None = Field(default=None, ge=2)
    """Target episodes per candidate and round, the same seeds for all (None: `evaluation.episodes`)."""

    @field_validator("candidates")
    @classmethod
    def _some(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if not value or any(not v for v in value.values()):
            raise ValueError(f"give at least one value for at least one of {', '.join(SEARCHABLE)}")
        for key, values in value.items():
            numbers = key != "init"
            bad = [v for v in values if isinstance(v, str) == numbers or (not numbers and v not in INITS)]
            if bad:
                allowed = "numbers" if numbers else ", ".join(INITS)
                raise ValueError(f"{key}: {bad[0]!r} is not a candidate value (allowed: {allowed})")
        return value

    def settings(self) -> list[dict[str, Any]]:
        """Every combination of the candidate values, in a fixed order; a fresh policy (`init: scratch`)
        is one candidate whatever the other settings (it has nothing to freeze or transfer)."""
        combos: list[dict[str, Any]] = [{}]
        for key, values in self.candidates.items():
            combos = [{**c, key: v} for c in combos for v in values]
        out: list[dict[str, Any]] = []
        for combo in combos:
            setting = {"init": "scratch"} if combo.get("init") == "scratch" else combo
            if setting not in out:
                out.append(setting)
        return out


LrSchedule = Literal["constant", "linear", "cosine", "adaptive"]
"""How the fine-tuning rate moves: fixed with a decay, or steered by the policy's change."""


class FinetuneConfig(Spec):
    """How the pretrained policy is transferred and fine-tuned on the target, and what guards it.

    Guards (see `simreal.training.engine.sb3.guards`): `critic_warmup_steps` (critics learn first, the
    actor held), `l2sp` (pull toward the pretrained weights), `layer_lr_decay` (lower layers move less),
    `unfreeze_schedule` (target steps at which the frozen layers thaw, the top one first), `keep_best`
    (deploy the best evaluated policy, never worse than where fine-tuning started) with `patience`
    (stop after that many evaluations without improvement). `learning_starts` (SAC, TD3): target
    transitions collected before the first update, default one batch; the pretrained policy acts from
    the first step (SB3's random-action warm-up is for a policy that knows nothing)."""

    timesteps: int = Field(ge=1)
    """The target budget: target steps per variant and seed, for fine-tuning and for scratch."""
    learning_rate: float | None = Field(default=None, gt=0)
    """Fine-tuning learning rate (None: the pretraining rate x `lr_factor`)."""
    lr_factor: float = Field(default=0.1, gt=0)
    """Fine-tuning rate as a factor of the pretraining rate, unless `learning_rate` is set."""
    lr_schedule: LrSchedule | None = None
    """`constant`, a `linear` / `cosine` decay to 0, or `adaptive`: steered by the policy's change (KL) per
    update (PPO, A2C) or per `kl_window` target steps (SAC, TD3). None: `adaptive` for PPO and A2C (its
    bounds widened to hold the starting rate), `constant` for SAC and TD3 or with a warm-up (chosen on
    panels of random targets)."""
    target_kl: float = Field(default=0.01, gt=0)
    """With `lr_schedule: adaptive`: the policy change per update (KL) the rate is steered toward."""
    kl_window: int = Field(default=1000, ge=1)
    """With `lr_schedule: adaptive` and SAC/TD3: target steps over which one policy change is measured."""
    lr_bounds: tuple[float, float] = (0.01, 1.0)
    """With `lr_schedule: adaptive`: the lowest and highest rate, as factors of the pretraining rate."""
    lr_warmup_fraction: float = Field(default=0.0, ge=0, lt=1)
    """Share of the fine-tuning over which the rate ramps up linearly from ~0 (0: no warm-up)."""
    freeze_features: bool = True
    """Freeze the features extractor(s), held in eval mode."""
    freeze_layers: int = Field(default=0, ge=0)
    """Freeze the first k hidden layers of every actor and critic trunk."""
    reinit_heads: bool = False
    """Re-initialize the output layers (action mean/log-std, value or Q outputs) before fine-tuning."""
    obs_norm: Literal["keep", "reestimate", "reset"] = "keep"
    """Source observation statistics: `keep` them fixed, `reestimate` them on the target, or `reset` them."""
    reset_entropy: bool = False
    """Restart a learned entropy coefficient (SAC) at 1.0, with a fresh optimizer."""
    action_std_floor: float | None = Field(default=None, gt=0)
    """PPO/A2C: raise the pretrained policy's action std to at least this at the start (None: as it is)."""
    allow_cross_task: bool = False
    """Allow a source policy pretrained on another task whose spaces match (`--allow-cross-task`)."""
    critic_warmup_steps: int = Field(default=0, ge=0)
    """Target steps during which only the critics learn, the actor held fixed (0: none)."""
    l2sp: float = Field(default=0.0, ge=0)
    """L2-SP strength: pull the trained weights toward the pretrained ones (0: off)."""
    layer_lr_decay: float = Field(default=1.0, gt=0, le=1)
    """Rate factor per hidden layer down: the top layer x decay, the next x decay^2, ... (1: off)."""
    unfreeze_schedule: list[int] = []
    """Target steps at which the frozen layers thaw one at a time, the top one first."""
    keep_best: bool = False
    """Deploy the best evaluated policy, never worse than where fine-tuning started."""
    keep_best_margin: float = Field(default=0.0, ge=0)
    """With `keep_best`: a later policy is deployed only where its mean return beats the starting policy's
    by more than this many standard errors of the paired difference on the same evaluation episodes; the
    best of those is kept (0: the best evaluation, whatever its margin) - against deploying a lucky one."""
    patience: int | None = Field(default=None, ge=1)
    """Stop after this many evaluations without improvement (needs `keep_best`; None: never early). With a
    `keep_best_margin`, an evaluation that does not clear it counts as one without improvement."""
    auto: AutoConfig | None = None
    """Choose among candidate settings on the target, within the budget (None: the settings as given)."""
    learning_starts: int | None = Field(default=None, ge=0)
    """Off-policy algorithms: target transitions collected before the first update (None: one batch)."""
    n_envs: int | None = Field(default=None, ge=1)
    """Target envs of the target stages (default: `algo.n_envs`; 1 with `sim_backend: warp`)."""

    @field_validator("unfreeze_schedule")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        if any(s < 1 for s in value) or any(b <= a for a, b in zip(value, value[1:], strict=False)):
            raise ValueError(f"must be increasing target steps >= 1, got {value}")
        return value

    @field_validator("lr_bounds")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0 < low < high:
            raise ValueError(f"must be [low, high] factors with 0 < low < high, got [{low:g}, {high:g}]")
        return value

    @model_validator(mode="after")
    def _patience_keeps_best(self) -> FinetuneConfig:
        if self.patience is not None and not self.keep_best:
            raise ValueError("patience: stops early and deploys the best evaluation - set keep_best: true")
        if self.keep_best_margin > 0 and not self.keep_best:
            raise ValueError("keep_best_margin: how keep_best chooses - set keep_best: true")
        if len(self.unfreeze_schedule) > self.freeze_layers:
            raise ValueError(
                f"unfreeze_schedule: {len(self.unfreeze_schedule)} thaws but only {self.freeze_layers} "
                "frozen layers (allowed: at most freeze_layers entries)"
            )
        return self

    def check(self, exp: Any) -> None:
        """Freezing must fit the network, the search its candidates, the target its instances and the
        off-policy warm-up the budget."""
        depth = exp.algo.hidden_layers
        if self.freeze_layers > depth:
            raise ValueError(
                f"finetune.freeze_layers: {self.freeze_layers} exceeds the {depth} hidden layers "
                f"of algo.net_arch (allowed: 0..{depth})"
            )
        if self.auto is not None:
            if exp.pixels:
                raise ValueError("finetune.auto: not for pixel policies yet (allowed: state observations)")
            self._check_candidates(self.auto, depth)
        if exp.exclusive and exp.target_n_envs > 1:
            key = "finetune.n_envs" if self.n_envs is not None else "algo.n_envs"
            raise ValueError(
                f"{key}: {exp.target_n_envs} target instances at once, but target {exp.target} is "
                "exclusive (allowed: 1 - an exclusive target, e.g. a robot, has one instance at a time)"
            )
        if self.keep_best_margin > 0 and exp.evaluation.episodes < 2:
            raise ValueError(
                f"finetune.keep_best_margin: a margin in standard errors needs >= 2 evaluation.episodes to "
                f"measure one, got {exp.evaluation.episodes} (allowed: evaluation.episodes >= 2, or margin 0)"
            )
        starts = exp.finetune_learning_starts
        if exp.finetune_lr_schedule == "adaptive":
            self._check_adaptive(exp, starts)
        if self.action_std_floor is not None and starts is not None:
            raise ValueError(
                f"finetune.action_std_floor: a Gaussian policy's std; {exp.algo.name} is off-policy "
                "(allowed: PPO, A2C; for SAC's entropy: reset_entropy)"
            )
        if self.learning_starts is not None and starts is None:
            raise ValueError(
                f"finetune.learning_starts: {exp.algo.name} is on-policy and has no warm-up "
                "(allowed: SAC, TD3 and other off-policy algorithms)"
            )
        if starts is not None and starts >= self.timesteps:
            raise ValueError(
                f"finetune.learning_starts: {starts:,} transitions before the first update, but the budget "
                f"is {self.timesteps:,} target steps (allowed: below finetune.timesteps)"
            )

    def _check_adaptive(self, exp: Any, starts: int | None) -> None:
        """The KL-adaptive rate starts from the fine-tuning rate; off-policy, its windows fit the budget."""
        if starts is not None and starts + self.kl_window > self.timesteps:
            raise ValueError(
                f"finetune.kl_window: {self.kl_window:,} target steps after the first update at "
                f"{starts:,} do not fit the {self.timesteps:,}-step budget (allowed: at most "
                f"{self.timesteps - starts:,})"
            )
        if self.lr_warmup_fraction > 0:
            raise ValueError(
                "finetune.lr_warmup_fraction: the adaptive rate raises itself from the fine-tuning rate "
                "(allowed: 0 with lr_schedule: adaptive, or another lr_schedule)"
            )
        low, high = exp.finetune_lr_bounds
        if not low <= exp.finetune_lr <= high:
            raise ValueError(
                f"finetune.lr_bounds: the fine-tuning rate {exp.finetune_lr:.3g} lies outside "
                f"[{low:.3g}, {high:.3g}] (allowed: bounds around the rate it starts from, or another "
                "lr_schedule)"
            )

    def _check_candidates(self, auto: AutoConfig, depth: int) -> None:
        """Every candidate must be a valid fine-tuning setting for this network."""
        for setting in auto.settings():
            setting = {k: v for k, v in setting.items() if k != "init"}
            data = {**self.model_dump(exclude={"auto"}), **setting}
            try:
                FinetuneConfig.model_validate(data)
            except ValidationError as err:
                first = err.errors()[0]
                key = ".".join(str(p) for p in first["loc"]) or next(iter(setting))
                message = str(first["msg"]).removeprefix("Value error, ")
                raise ValueError(
                    f"finetune.auto.candidates.{key}: {setting.get(key, setting)!r} is not a valid setting "
                    f"({message})"
                ) from None
            if int(setting.get("freeze_layers", 0)) > depth:
                raise ValueError(
                    f"finetune.auto.candidates.freeze_layers: {setting['freeze_layers']} exceeds the "
                    f"{depth} hidden layers of algo.net_arch"
                )


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
    """Target steps between two evaluations of a target-trained variant (its learning curve)."""
    n_envs: int | None = Field(default=None, ge=1, le=64)
    """Target instances an evaluation runs side by side (None: 4 with a backbone, else 1; exclusive: 1)."""
    episodes: int = Field(default=5, ge=1)
    """Episodes per evaluation of the learning curve."""
    final_episodes: int = Field(default=10, ge=1)
    """Episodes of each variant's final evaluation (the reported final return)."""
    threshold_fraction: float = Field(default=0.9, gt=0, le=1)
    """The sample-efficiency threshold: this fraction of the way from the untrained return to 'good'."""
    success_return: float | None = None
    """An absolute return that means 'good' on this target (None: the reference stage's return)."""
    count_in_budget: bool = False
    """Count evaluation episodes (and other target interaction) in `finetune.timesteps`."""

    def check(self, exp: Any) -> None:
        """An exclusive target (a robot) has one instance at a time, for evaluations too."""
        if exp.exclusive and (self.n_envs or 1) > 1:
            raise ValueError(
                f"evaluation.n_envs: {self.n_envs} target instances at once, but the target is "
                "exclusive (allowed: 1)"
            )


class ReferenceConfig(Spec):
    """Scratch on the target for much longer than the fine-tuning budget: what a target-trained policy
    reaches, so the threshold means "good", and scratch gets the chance to get there.

    `timesteps` defaults to 10x `finetune.timesteps`, `every_steps` (its evaluation cadence) to 4x
    `evaluation.every_steps`: a converged policy's episodes are long, and evaluating it as often as the
    short variants would cost more target steps than training it. Reference stages are kept under
    `<output_dir>/references/` keyed by everything that determines them, and reused by later runs."""

    timesteps: int | None = Field(default=None, ge=1)
    """Target steps of the reference stage (None: 10 x `finetune.timesteps`)."""
    every_steps: int | None = Field(default=None, ge=1)
    """Target steps between two of its evaluations (None: 4 x `evaluation.every_steps`)."""

    def check(self, exp: Any) -> None:
        """The reference must train at least as long as the variants it measures."""
        steps = exp.reference_steps
        if steps is not None and steps < exp.finetune.timesteps:
            raise ValueError(
                f"reference.timesteps: {steps} is below the fine-tuning budget "
                f"{exp.finetune.timesteps} (allowed: >= finetune.timesteps; default 10x it)"
            )
