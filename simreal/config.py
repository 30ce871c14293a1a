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
    kwarg,
    rollout_steps,
)
from simreal.schema import OFFLINE, ConfigError, Spec, config_dir, format_error, load_yaml, offline, parse
from simreal.sections import (
    AlgoConfig,
    AutoConfig,
    CalibrateConfig,
    DistillConfig,
    EvalConfig,
    FinetuneConfig,
    LrSchedule,
    MetaConfig,
    MultitaskConfig,
    PerceptionConfig,
    PretrainConfig,
    ReferenceConfig,
)
from simreal.simulation.observation import ObservationConfig
from simreal.simulation.references import load_attr
from simreal.simulation.tasks import TaskSpec, load_task

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
    """Name of the run directory under `output_dir` (a plain name: no slashes, spaces or leading dot)."""
    task: TaskSpec
    """The task: a packaged key, a path to a task YAML (relative to this file) or an inline mapping."""
    target: str
    """Which of the task's `targets` the policy is transferred to."""
    output_dir: str = "runs"
    """Directory the run directory goes under (relative to the working directory)."""
    seeds: list[int] = Field(default=[0, 1, 2], min_length=1)
    """Training seeds, all distinct: every stage runs once per seed."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Torch device of every stage: `auto` is CUDA when available, else the CPU."""
    sim_backend: Literal["gymnasium", "warp"] = "gymnasium"
    """Where pretraining's source sims step: Gymnasium envs, or `algo.n_envs` worlds of one MuJoCo Warp
    model (`simreal.simulation.batched`). Target stages always use the target's Gymnasium env."""
    workers: int = Field(default=0, ge=0)
    """Processes that run stages side by side (0: one per core, at most as many as can run at once)."""
    torch_threads: int = Field(default=1, ge=1)
    """Intra-op torch threads of every stage, wherever it runs (results depend on it)."""
    checkpoint_every_steps: int = Field(default=5000, ge=1)
    """Steps between two checkpoints of a training or distillation stage (what `--resume` continues from)."""
    scratch: bool | None = None
    """Run the scratch variant, trained on the target from nothing (None: unless the target is exclusive)."""
    observation: ObservationConfig = ObservationConfig()
    """What the policy observes beyond the env's own observation, in every env of the run."""
    pixels: bool = False
    """Observe through the task's camera (its pixel ids; the task needs a `pixels:` section)."""
    perception: PerceptionConfig | None = None
    """The image backbone of a pixel policy (needs `pixels: true`; None: the policy reads the raw frames)."""
    algo: AlgoConfig = AlgoConfig()
    """The algorithm, its network and its constructor arguments."""
    pretrain: PretrainConfig
    """Pretraining in the source sim."""
    finetune: FinetuneConfig
    """Transfer to the target and fine-tuning there; its `timesteps` is the target budget."""
    evaluation: EvalConfig = EvalConfig()
    """Evaluation on the target: the learning curve and the final measurement."""
    reference: ReferenceConfig | Literal[False] | None = None
    """The reference stage: `true` or a mapping runs it, `false` skips it; unset: it runs unless the
    target is exclusive."""
    distill: DistillConfig | None = None
    """Distillation of a privileged teacher into a history-based student (None: no distillation stages)."""
    calibrate: CalibrateConfig | None = None
    """Calibration from target data and pretraining on the calibrated ranges (None: no calibration
    stages)."""
    multitask: MultitaskConfig | None = None
    """How one network serves the tasks of `pretrain.tasks` (None: the defaults, where there are tasks)."""
    meta: MetaConfig | None = None
    """A meta-learned initialization (Reptile, the inner loop this experiment's fine-tuning) and its
    fine-tuning on the target (None: no meta-learning stages)."""
    methods: list[str] = []
    """Transfer methods of your own beside the packaged ones: `module:attr` naming a
    `simreal.training.engine.Method`. Each may own a top-level section of this file (its `section`),
    validated by its `config` Spec as strictly as the packaged sections."""
    method_sections: dict[str, Any] = {}
    """The validated sections of `methods` (written back as top-level keys; not a key of the file)."""

    @model_validator(mode="before")
    @classmethod
    def _user_sections(cls, data: Any, info: ValidationInfo) -> Any:
        """Take each user method's section out of the top level and validate it with the method's Spec."""
        if not isinstance(data, dict) or not data.get("methods"):
            return data
        refs = data["methods"]
        if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
            raise ValueError(f"methods: expected a list of module:attr strings, got {refs!r}")
        data = dict(data)
        sections = dict(data.pop("method_sections", None) or {})
        if offline(info.context):  # no user code imported: every other top-level key is a section
            for key in [k for k in data if k not in cls.model_fields]:
                sections[key] = data.pop(key)
            data["method_sections"] = sections
            return data
        for i, ref in enumerate(refs):
            where = f"methods.{i}"
            method = load_attr(ref, where)
            name, config = getattr(method, "section", None), getattr(method, "config", None)
            if not callable(getattr(method, "stages", None)):
                raise ValueError(
                    f"{where}: {ref!r} is not a method (allowed: a subclass of "
                    "simreal.training.engine.Method that declares its stages)"
                )
            if name is None:
                continue
            if name in cls.model_fields:
                raise ValueError(f"{where}: {ref!r} claims section {name!r}, a key of the experiment itself")
            if config is None or not (isinstance(config, type) and issubclass(config, Spec)):
                raise ValueError(f"{where}: {ref!r} owns section {name!r} but its config is not a Spec")
            raw = data.pop(name, sections.get(name, {}))
            if isinstance(raw, Spec):
                sections[name] = raw
                continue
            try:
                sections[name] = config.model_validate(raw if raw is not None else {}, context=info.context)
            except ValidationError as err:
                raise ValueError(format_error(config, err, name)) from None
        data["method_sections"] = sections
        return data

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
        """The experiment's own rules, then each section's rules that involve the others (`check`)."""
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
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: duplicates in {self.seeds}")
        self._check_backend()
        sections = (
            self.observation,
            self.perception,
            self.algo,
            self.pretrain,
            self.finetune,
            self.evaluation,
            self.reference,
            self.distill,
            self.calibrate,
            self.meta,
            *self.method_sections.values(),
        )
        for section in sections:
            if isinstance(section, Spec):
                section.check(self)
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

    def section(self, name: str) -> Any:
        """A user method's validated section (`methods:`), by its name."""
        return self.method_sections[name]

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

    @property
    def finetune_lr_schedule(self) -> LrSchedule:
        """`finetune.lr_schedule`, or its default: `adaptive` for on-policy algorithms (PPO, A2C),
        `constant` for off-policy ones (SAC, TD3) and wherever a warm-up is asked for - chosen on panels
        of random targets (see the fine-tuning guide)."""
        ft = self.finetune
        if ft.lr_schedule is not None:
            return ft.lr_schedule
        fixed = self.finetune_learning_starts is not None or ft.lr_warmup_fraction > 0
        return "constant" if fixed else "adaptive"

    @property
    def finetune_lr_bounds(self) -> tuple[float, float]:
        """The adaptive rate's lowest and highest value: `finetune.lr_bounds` x the pretraining rate, and,
        when adaptive is only the default, widened to hold a starting rate of the user's own outside them
        (an explicit `lr_schedule: adaptive` refuses one instead: `FinetuneConfig.check`)."""
        low, high = (f * self.algo.pretrain_lr for f in self.finetune.lr_bounds)
        if self.finetune.lr_schedule is None:
            low, high = min(low, self.finetune_lr), max(high, self.finetune_lr)
        return low, high


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
    """The resolved config as YAML (saved in every run directory): user methods' sections at the top."""
    data = cfg.model_dump(mode="json")
    sections = data.pop("method_sections")
    if not data["methods"]:
        data.pop("methods")
    return yaml.safe_dump({**data, **sections}, sort_keys=False)
