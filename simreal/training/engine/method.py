"""Transfer methods as plugins: each declares its stages, and the engine derives everything else.

A method (pretraining, zero-shot, fine-tuning, scratch, the reference, distillation - or a user's own)
is a class that says which stages it adds, what each depends on, whether it acts on the target and which
variants it reports. From those declarations the engine derives the run's stage graph and its schedule
(an exclusive target runs one target stage at a time), the target stages whose steps are counted, the
budget's reserve for extra evaluations, preflight's checks, and the report's rows, labels and
comparisons (`variants.json` in the run directory). Adding a method never edits the engine.

A user's method comes from their own module, as tasks, effects and parameters do::

    methods: [my_pkg.methods:LinearProbe]
    linear_probe: {lr_factor: 0.5}        # its own section, validated by LinearProbe.config

Example (a method that fine-tunes with every layer but the last frozen)::

    class LinearProbe(Method):
        name = "linear_probe"
        section = "linear_probe"
        config = LinearProbeConfig          # a simreal.schema.Spec: unknown keys are one-line errors

        def stages(self) -> list[Stage]:
            probe = Variant("linear_probe", "linear probe (last layer only)", learning=True)
            return [Stage("linear_probe", run_probe, after=("pretrain_randomized",), on_target=True,
                          variants=(probe,))]

`run_probe(ctx, seed, source)` receives the results of the stages it comes after, in that order.
Stage functions must be importable module-level functions: they run in worker processes.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from simreal.config import ExperimentConfig
from simreal.schema import ConfigError, Spec
from simreal.simulation.references import load_attr

BUILTIN = (
    "simreal.training.methods.pretrain:Pretrain",
    "simreal.training.methods.finetune:Finetune",
    "simreal.training.methods.scratch:Scratch",
    "simreal.training.methods.zeroshot:ZeroShot",
    "simreal.training.methods.scratch:Reference",
    "simreal.training.methods.distill:Distill",
    "simreal.training.methods.calibrate:Calibrate",
    "simreal.training.methods.meta:Meta",
    "simreal.training.methods.multitask:Multitask",
)
"""The packaged methods, resolved by name exactly as a user's are (order: the report's row order)."""


@dataclass(frozen=True)
class Variant:
    """A row of the report: what one stage's results are called and how they are compared.

    `learning`: trained on the target (a learning curve; area under it, return at the budget).
    `beats`: (other variant, key) pairs - the report gives P(this > other) as `p_<key>` and `<key>`.
    `below`: (other variant, key) pairs - `<key>` says whether this variant's mean fell below the other's
    (negative transfer)."""

    name: str
    label: str
    learning: bool = False
    beats: tuple[tuple[str, str], ...] = ()
    below: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "learning": self.learning,
            "beats": [list(b) for b in self.beats],
            "below": [list(b) for b in self.below],
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Variant:
        return Variant(
            data["name"],
            data["label"],
            bool(data.get("learning", False)),
            tuple((a, b) for a, b in data.get("beats", [])),
            tuple((a, b) for a, b in data.get("below", [])),
        )


def _always(cfg: ExperimentConfig) -> bool:
    return True


@dataclass(frozen=True)
class Stage:
    """One stage of every seed. `run(ctx, seed, *results)` gets the results of the stages named in
    `after` (in that order) and returns what its dependents receive (e.g. a policy path). `on_target`:
    it acts on the target (its steps are counted; on an exclusive target, one such stage at a time).
    `enabled(cfg)`: whether the config asks for it (a stage after a disabled one is disabled too).
    `early`: queued before the other stages that wait for nothing (the longest ones)."""

    name: str
    run: Callable[..., Any]
    after: tuple[str, ...] = ()
    on_target: bool = False
    variants: tuple[Variant, ...] = ()
    enabled: Callable[[ExperimentConfig], bool] = field(default=_always)
    early: bool = False


def transfer_stages(
    suffix: str,
    labels: tuple[str, str],
    zeroshot: Callable[..., Any],
    finetune: Callable[..., Any],
    after: tuple[str, ...],
    enabled: Callable[[ExperimentConfig], bool],
    against_scratch: bool = True,
) -> tuple[Stage, Stage]:
    """A method's policy on the target, zero-shot and fine-tuned: stages (and variants) `zeroshot_<suffix>`
    and `finetune_<suffix>` after `after` (their runs get those stages' results), labelled `labels`, the
    report comparing them with the randomized policy's (`<suffix>_beats_randomized_zeroshot`,
    `<suffix>_finetune_beats_finetune`) and with scratch (`<suffix>_finetune_beats_scratch`)."""
    beats = [("finetune", f"{suffix}_finetune_beats_finetune")]
    if against_scratch:
        beats.append(("scratch", f"{suffix}_finetune_beats_scratch"))
    shot = Variant(
        f"zeroshot_{suffix}",
        labels[0],
        beats=(("zeroshot_randomized", f"{suffix}_beats_randomized_zeroshot"),),
    )
    tuned = Variant(f"finetune_{suffix}", labels[1], learning=True, beats=tuple(beats))
    return (
        Stage(shot.name, zeroshot, after, True, (shot,), enabled),
        Stage(tuned.name, finetune, after, True, (tuned,), enabled),
    )


class Method:
    """Base of a transfer method. Subclasses set `name`, optionally `section` and `config` (the top-level
    config key they own and its `Spec`, validated at config load like the built-in sections), and
    declare their `stages`. Optional hooks: `reserve_episodes` (extra target episodes a target stage
    evaluates, for the budget's reserve) and `preflight` (checks before anything is written)."""

    name: ClassVar[str] = ""
    section: ClassVar[str | None] = None
    config: ClassVar[type[Spec] | None] = None

    def stages(self) -> Sequence[Stage]:
        raise NotImplementedError

    def reserve_episodes(self, cfg: ExperimentConfig) -> int:
        """Target episodes a target stage evaluates beyond the evaluation grid (0: none)."""
        return 0

    def preflight(self, ctx: Any) -> None:
        """Checks that need the run's envs or models (`ctx`: its `simreal.training.engine.context.Context`,
        typed loosely because the context derives its budget from the methods); raise ConfigError naming
        the key, before anything is written."""


@dataclass(frozen=True)
class Plan:
    """The enabled stages of a config, each after the stages it needs (ties in declaration order)."""

    methods: tuple[Method, ...]
    stages: tuple[Stage, ...]

    @property
    def target_stages(self) -> frozenset[str]:
        return frozenset(s.name for s in self.stages if s.on_target)

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def width(self) -> int:
        """Stages of one seed that can run at once (the largest set of which none needs another)."""
        ancestors = {s.name: self._ancestors(s.name) for s in self.stages}
        names = [s.name for s in self.stages]
        if len(names) > 14:
            return len(names)
        for size in range(len(names), 0, -1):
            for group in itertools.combinations(names, size):
                if all(a not in ancestors[b] for a in group for b in group):
                    return size
        return 1

    def _ancestors(self, name: str) -> set[str]:
        seen: set[str] = set()
        todo = list(self.stage(name).after)
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(self.stage(n).after)
        return seen


def resolve_method(ref: str, where: str) -> Method:
    """The method `module:attr` names (a Method subclass or instance), or a one-line ConfigError."""
    obj = load_attr(ref, where)
    if isinstance(obj, type) and issubclass(obj, Method):
        obj = obj()
    if not isinstance(obj, Method):
        raise ConfigError(
            f"{where}: {ref!r} is not a method (allowed: a subclass of simreal.training.engine.Method "
            "that declares its stages)"
        )
    if not obj.name:
        raise ConfigError(f"{where}: {ref!r} has no name (set the class attribute `name`)")
    return obj


@functools.lru_cache(maxsize=32)
def _methods(user: tuple[str, ...]) -> tuple[Method, ...]:
    builtin = [resolve_method(ref, "methods (packaged)") for ref in BUILTIN]
    return (*builtin, *(resolve_method(ref, f"methods.{i}") for i, ref in enumerate(user)))


def methods_of(cfg: ExperimentConfig) -> tuple[Method, ...]:
    """The packaged methods and the config's own (`methods:`), resolved."""
    return _methods(tuple(cfg.methods))


def declared_variants(cfg: ExperimentConfig) -> list[Variant]:
    """Every variant the config's methods declare, in report order: the methods' order (the packaged ones
    first), then their stages' - whether or not this config enables them (what `variants.json` holds)."""
    return [v for m in methods_of(cfg) for s in m.stages() for v in s.variants]


def plan(cfg: ExperimentConfig) -> Plan:
    """The run's stage graph: every declared stage checked (unique names and variants, dependencies that
    exist and form no cycle), then the ones the config enables. Errors name the `methods` entry."""
    methods = methods_of(cfg)
    where = _where(cfg)
    declared: dict[str, Stage] = {}
    variants: dict[str, str] = {}
    for method in methods:
        for stage in method.stages():
            if stage.name in declared:
                raise ConfigError(
                    f"{where(method)}: stage {stage.name!r} is declared by another method already "
                    "(allowed: a stage name of its own)"
                )
            declared[stage.name] = stage
            for v in stage.variants:
                if v.name in variants:
                    raise ConfigError(
                        f"{where(method)}: variant {v.name!r} is declared by method {variants[v.name]!r} "
                        "already (allowed: a variant name of its own)"
                    )
                variants[v.name] = method.name
    owner = {s.name: m for m in methods for s in m.stages()}
    for stage in declared.values():
        for dep in stage.after:
            if dep not in declared:
                raise ConfigError(
                    f"{where(owner[stage.name])}: stage {stage.name!r} comes after {dep!r}, which no method "
                    f"declares (declared: {', '.join(declared)})"
                )
    _check_acyclic(declared, lambda name: where(owner[name]))
    enabled: dict[str, Stage] = {}
    for stage in _topological(declared):
        if stage.enabled(cfg) and all(dep in enabled for dep in stage.after):
            enabled[stage.name] = stage
    return Plan(methods, tuple(enabled.values()))


def _where(cfg: ExperimentConfig) -> Callable[[Method], str]:
    refs = list(cfg.methods)
    user = methods_of(cfg)[len(BUILTIN) :]

    def where(method: Method) -> str:
        for i, m in enumerate(user):
            if m is method:
                return f"methods.{i} ({refs[i]})"
        return f"methods ({method.name}, packaged)"

    return where


def _topological(declared: dict[str, Stage]) -> list[Stage]:
    done: set[str] = set()
    out: list[Stage] = []
    pending = list(declared.values())
    while pending:
        ready = next(s for s in pending if all(a in done for a in s.after))
        pending.remove(ready)
        done.add(ready.name)
        out.append(ready)
    return out


def _check_acyclic(declared: dict[str, Stage], where: Callable[[str], str]) -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = path[path.index(name) :] + [name]
            raise ConfigError(f"{where(name)}: stages {' -> '.join(cycle)} form a cycle (allowed: no cycles)")
        state[name] = 1
        for dep in declared[name].after:
            visit(dep, [*path, name])
        state[name] = 2

    for name in declared:
        visit(name, [])
