"""The experiment schema: what `simreal run CONFIG` reads, validated before any training.

YAML keys equal these field names; unknown keys, wrong types and missing fields are one-line
`ConfigError`s naming the key path. `--set key.path=value` overrides go through the same schema.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    Field,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from agents.algorithms import (
    check_algo_kwargs,
    kwarg,
    rollout_steps,
)
from simreal.schema import OFFLINE, ConfigError, Spec, config_dir, load_yaml, parse
from simreal.sections import (
    AlgoConfig,
    AutoConfig,
    EvalConfig,
    FinetuneConfig,
    PretrainConfig,
    ReferenceConfig,
)
from simreal.simulation.observation import ObservationConfig
from simreal.simulation.tasks import TaskSpec, load_task
from simreal.training.distill_config import SUPPORTED_ALGOS, DistillConfig
from simreal.training.perception import PerceptionConfig

__all__ = [
    "AlgoConfig",
    "AutoConfig",
    "EvalConfig",
    "ExperimentConfig",
    "FinetuneConfig",
    "PretrainConfig",
    "ReferenceConfig",
    "apply_overrides",
    "default_config_path",
    "dump_config",
    "load_config",
]


class ExperimentConfig(Spec):
    """One transfer experiment: a task, its target, the algorithm, the budgets and the seeds.

    `task` is a packaged key, a path to a task YAML (relative to the experiment file) or an inline
    mapping; it is resolved into the task's full spec at load, and saved that way with the run, so a run
    directory holds everything `simreal report` and `--resume` need."""

    experiment: str
    task: TaskSpec
    target: str
    output_dir: str = "runs"
    seeds: list[int] = Field(default=[0, 1, 2], min_length=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    sim_backend: Literal["gymnasium", "warp"] = "gymnasium"
    """Where pretraining's source sims step: Gymnasium envs, or `algo.n_envs` worlds of one MuJoCo Warp
    model (`simreal.simulation.batched`). Target stages always use the target's Gymnasium env."""
    workers: int = Field(default=0, ge=0)
    torch_threads: int = Field(default=1, ge=1)
    checkpoint_every_steps: int = Field(default=5000, ge=1)
    scratch: bool | None = None
    observation: ObservationConfig = ObservationConfig()
    pixels: bool = False
    perception: PerceptionConfig | None = None
    algo: AlgoConfig = AlgoConfig()
    pretrain: PretrainConfig
    finetune: FinetuneConfig
    evaluation: EvalConfig = EvalConfig()
    reference: ReferenceConfig | Literal[False] | None = None
    distill: DistillConfig | None = None

    @field_validator("reference", mode="before")
    @classmethod
    def _reference_switch(cls, value: Any) -> Any:
        """`reference: true` is the default reference, `false` none, unset: the default unless exclusive."""
        return {} if value is True else value

    @field_validator("experiment")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value or any(c in value for c in "/\\ ") or value.startswith("."):
            raise ValueError(f"must be a plain directory name, got {value!r}")
        return value

    @field_validator("task", mode="before")
    @classmethod
    def _resolve_task(cls, value: Any, info: ValidationInfo) -> Any:
        """A key, a path (relative to the experiment file) or a mapping -> the task's spec."""
        if isinstance(value, TaskSpec):
            return value
        if not isinstance(value, str | dict):
            raise ValueError(f"must be a task key, a path to a task YAML or a mapping, got {value!r}")
        context = info.context or {}
        where = f"{context.get('source', 'config')}: task"
        return load_task(value, context.get("base_dir"), where=where, context=context)

    @field_serializer("task")
    def _dump_task(self, task: TaskSpec) -> dict[str, Any]:
        return task.model_dump(mode="json")

    @model_validator(mode="after")
    def _task(self) -> ExperimentConfig:
        task = self.task
        if self.target not in task.targets:
            raise ValueError(
                f"target: unknown target {self.target!r} of {task.name} "
                f"(allowed: {', '.join(task.targets) or 'none - the task defines no targets'})"
            )
        if self.pixels and task.pixels is None:
            raise ValueError(
                f"pixels: task {task.name} has no pixels: section (allowed: add one to {task.source})"
            )
        if self.perception is not None and not self.pixels:
            raise ValueError("perception: a CNN backbone needs image observations (set pixels: true)")
        cached = self.perception is not None and self.perception.cache_features
        if self.pixels and self.algo.normalize_obs and not cached:
            raise ValueError(
                "algo.normalize_obs: with pixels it normalizes cached backbone features "
                "(allowed: perception.cache_features: true; the backbone normalizes images itself)"
            )
        if (
            self.perception is not None
            and self.perception.projection == "keypoints"
            and self.algo.normalize_obs
        ):
            raise ValueError(
                "algo.normalize_obs: it would normalize every cell of the cached grid on its own, which "
                "breaks perception.projection: keypoints (its filters are shared across cells and it "
                "standardizes channels itself; allowed: normalize_obs: false)"
            )
        if self.pixels and (self.observation.privileged or self.observation.history_window):
            raise ValueError(
                "observation.privileged/history_window: not with image observations (allowed: action_history)"
            )
        if self.finetune.freeze_layers > self.algo.hidden_layers:
            depth = self.algo.hidden_layers
            raise ValueError(
                f"finetune.freeze_layers: {self.finetune.freeze_layers} exceeds the {depth} hidden layers "
                f"of algo.net_arch (allowed: 0..{depth})"
            )
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: duplicates in {self.seeds}")
        if self.finetune.auto is not None:
            if self.pixels:
                raise ValueError("finetune.auto: not for pixel policies yet (allowed: state observations)")
            self._check_candidates(self.finetune.auto)
        if self.exclusive and (self.evaluation.n_envs or 1) > 1:
            raise ValueError(
                f"evaluation.n_envs: {self.evaluation.n_envs} target instances at once, but the target is "
                "exclusive (allowed: 1)"
            )
        if self.exclusive and self.target_n_envs > 1:
            key = "finetune.n_envs" if self.finetune.n_envs is not None else "algo.n_envs"
            raise ValueError(
                f"{key}: {self.target_n_envs} target instances at once, but target {self.target} is "
                "exclusive (allowed: 1 - an exclusive target, e.g. a robot, has one instance at a time)"
            )
        try:
            check_algo_kwargs(self.algo.name, self.pretrain.algo_kwargs)
        except ValueError as err:
            raise ValueError(str(err).replace("algo.kwargs.", "pretrain.algo_kwargs.", 1)) from None
        self._check_backend()
        if self.distill is not None:
            self._check_distill(self.distill)
        if self.algo.vec_env == "subproc" and task.randomization.adr is not None:
            raise ValueError(
                "algo.vec_env: subproc envs cannot share randomization.adr's ranges, which every env of a "
                "run grows together (allowed: dummy with ADR)"
            )
        starts = self.finetune_learning_starts
        if self.finetune.learning_starts is not None and starts is None:
            raise ValueError(
                f"finetune.learning_starts: {self.algo.name} is on-policy and has no warm-up "
                "(allowed: SAC, TD3 and other off-policy algorithms)"
            )
        if starts is not None and starts >= self.finetune.timesteps:
            raise ValueError(
                f"finetune.learning_starts: {starts:,} transitions before the first update, but the budget "
                f"is {self.finetune.timesteps:,} target steps (allowed: below finetune.timesteps)"
            )
        if self.reference_steps is not None and self.reference_steps < self.finetune.timesteps:
            raise ValueError(
                f"reference.timesteps: {self.reference_steps} is below the fine-tuning budget "
                f"{self.finetune.timesteps} (allowed: >= finetune.timesteps; default 10x it)"
            )
        return self

    def _check_backend(self) -> None:
        """What `sim_backend: warp` cannot do yet (the task's env, parameters and effects are checked by
        preflight, which builds the host env)."""
        if self.sim_backend != "warp":
            return
        refused = {
            "pixels": self.pixels,
            "algo.vec_env": self.algo.vec_env == "subproc",
            "distill": self.distill is not None,
            "observation.privileged": self.observation.privileged,
            "observation.history_window": bool(self.observation.history_window),
        }
        for key, used in refused.items():
            if used:
                raise ValueError(
                    f"{key}: not supported with sim_backend: warp (its worlds are one batched model; "
                    "allowed: state observations, in-process, no distillation - or sim_backend: gymnasium)"
                )

    def _check_distill(self, distill: DistillConfig) -> None:
        """What distillation needs of the rest of the experiment (the env's privileged values are
        checked by preflight, which builds it)."""
        allowed = SUPPORTED_ALGOS
        if self.algo.name not in allowed:
            raise ValueError(
                f"distill: not for algo.name {self.algo.name} yet (allowed: {', '.join(allowed)})"
            )
        if self.pixels and self.perception is None:
            raise ValueError(
                "distill: a camera student needs a perception: section (its backbone: cached features, or "
                "a CNN trained end to end with cache_features: false)"
            )
        if self.algo.policy != "MlpPolicy":
            raise ValueError(f"distill: algo.policy {self.algo.policy} (allowed: MlpPolicy)")
        if "features_extractor_class" in self.algo.policy_extra:
            raise ValueError(
                "distill: algo.policy_extra.features_extractor_class is set, but teacher and student bring "
                "their own extractors (allowed: leave it unset)"
            )
        if self.observation.privileged or self.observation.history_window:
            raise ValueError(
                "observation.privileged / history_window: set by distill for its teacher and student "
                "(allowed: leave them unset)"
            )
        if "squash_output" in self.algo.policy_extra:
            raise ValueError("distill: algo.policy_extra.squash_output is not supported (allowed: unset)")
        head = distill.student.net_arch or distill.teacher.net_arch or self.algo.net_arch
        depth = AlgoConfig(name=self.algo.name, net_arch=head).hidden_layers
        frozen = [self.finetune.freeze_layers]
        if self.finetune.auto is not None:
            frozen += [int(v) for v in self.finetune.auto.candidates.get("freeze_layers", [])]
        if max(frozen) > depth:
            raise ValueError(
                f"distill: the student's policy head has {depth} hidden layers, but fine-tuning may freeze "
                f"{max(frozen)} (finetune.freeze_layers / auto candidates) (allowed: at most {depth})"
            )

    def _check_candidates(self, auto: AutoConfig) -> None:
        """Every candidate must be a valid fine-tuning setting for this network."""
        for setting in auto.settings():
            data = {**self.finetune.model_dump(exclude={"auto"}), **setting}
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
            if int(setting.get("freeze_layers", 0)) > self.algo.hidden_layers:
                raise ValueError(
                    f"finetune.auto.candidates.freeze_layers: {setting['freeze_layers']} exceeds the "
                    f"{self.algo.hidden_layers} hidden layers of algo.net_arch"
                )

    @property
    def exclusive(self) -> bool:
        """The target allows one instance at a time (hardware): target stages run in turn."""
        return self.task.targets[self.target].exclusive

    @property
    def run_scratch(self) -> bool:
        """Scratch runs unless turned off - on an exclusive target (a robot's time) only when asked for."""
        return self.scratch if self.scratch is not None else not self.exclusive

    @property
    def reference_every(self) -> int:
        """Evaluation cadence of the reference stage."""
        explicit = self.reference.every_steps if isinstance(self.reference, ReferenceConfig) else None
        return explicit or 4 * self.evaluation.every_steps

    @property
    def reference_steps(self) -> int | None:
        """Target steps of the reference stage (None: no reference stage; on an exclusive target only
        when `reference:` is given)."""
        if self.reference is False or (self.reference is None and self.exclusive):
            return None
        explicit = self.reference.timesteps if isinstance(self.reference, ReferenceConfig) else None
        return explicit or 10 * self.finetune.timesteps

    @property
    def finetune_learning_starts(self) -> int | None:
        """Target transitions an off-policy fine-tuning collects before its first update (default one
        batch); None for on-policy algorithms, which have no such warm-up."""
        algo, ft = self.algo, self.finetune
        if kwarg(algo.name, algo.kwargs, "learning_starts") is None:
            return None
        return int(
            ft.learning_starts
            if ft.learning_starts is not None
            else kwarg(algo.name, algo.kwargs, "batch_size")
        )

    @property
    def target_n_envs(self) -> int:
        """Target envs of a target stage: `finetune.n_envs`, else `algo.n_envs` (1 on `sim_backend: warp`,
        whose `algo.n_envs` counts batched worlds)."""
        if self.finetune.n_envs is not None:
            return self.finetune.n_envs
        return 1 if self.sim_backend == "warp" else self.algo.n_envs

    @property
    def target_rollout(self) -> int:
        """Target steps between two updates of a target stage."""
        return rollout_steps(self.algo.name, self.algo.kwargs, self.target_n_envs)

    @property
    def pretrain_algo(self) -> AlgoConfig:
        """The algorithm as pretraining builds it: `algo` with `pretrain.algo_kwargs` over its kwargs."""
        if not self.pretrain.algo_kwargs:
            return self.algo
        return self.algo.model_copy(update={"kwargs": {**self.algo.kwargs, **self.pretrain.algo_kwargs}})

    @property
    def finetune_lr(self) -> float:
        ft = self.finetune
        return ft.learning_rate if ft.learning_rate is not None else self.algo.pretrain_lr * ft.lr_factor


def default_config_path() -> Path:
    """The embedded default: the packaged `configs/quickstart.yaml`."""
    return config_dir() / "quickstart.yaml"


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `key.path=value` strings (value parsed as YAML scalar/list) to a copy of `data`."""
    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item}: expected key.path=value")
        path, raw = item.split("=", 1)
        keys = path.strip().split(".")
        node = out
        for key in keys[:-1]:
            nxt = node.setdefault(key, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {path}: {key} is not a mapping")
            node = nxt
        try:
            node[keys[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"--set {path}: cannot parse value {raw!r}") from None
    return out


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, resolve: bool = True
) -> ExperimentConfig:
    """Read, override and validate an experiment config (the embedded default when `path` is None).

    `resolve=False` reads it as data only, without importing the user code a task names (reports and
    comparisons of a run need no env)."""
    source = Path(path) if path is not None else default_config_path()
    data = load_yaml(source)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    data = apply_overrides(data, overrides or [])
    context = {"base_dir": source.resolve().parent, "source": str(source), OFFLINE: not resolve}
    return parse(ExperimentConfig, data, str(source), context)


def dump_config(cfg: ExperimentConfig) -> str:
    """The resolved config as YAML (saved in every run directory)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
