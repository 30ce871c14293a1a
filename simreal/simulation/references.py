"""User code named in YAML: `module:attr` references and modules to import, resolved with one-line errors.

A task, an effect or a parameter may live in the user's own package: `env: my_pkg.robots:ArmEnv`,
`type: my_pkg.effects:GripperSlip`, `param: my_pkg.params:cable_stiffness`. The module is imported
by name (never `eval`), the attribute looked up, and any failure is a `ConfigError` naming the key.

Example:
    >>> load_attr("gymnasium.wrappers:TimeLimit", "effects.0.type")
    <class 'gymnasium.wrappers.common.TimeLimit'>
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from dataclasses import replace
from types import ModuleType
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec

from simreal.schema import ConfigError

_REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.\-]*$")


def is_reference(value: str) -> bool:
    """True for a `module:attr` string."""
    return bool(_REFERENCE.match(value))


def import_module(name: str, where: str) -> ModuleType:
    """Import `name`; a failure is one line naming `where` and the import error."""
    try:
        return importlib.import_module(name)
    except Exception as err:  # noqa: BLE001 - a user module can fail in any way while importing
        raise ConfigError(
            f"{where}: cannot import module {name!r} ({type(err).__name__}: {err}) "
            "(allowed: an importable module; is its package installed, or on PYTHONPATH?)"
        ) from None


def split_reference(ref: str, where: str) -> tuple[str, str]:
    """`module:attr` -> (module, attr), or a ConfigError showing the expected form."""
    if not is_reference(ref):
        raise ConfigError(f"{where}: {ref!r} is not a module:attr reference (allowed: e.g. my_pkg.mod:Name)")
    module, _, attr = ref.partition(":")
    return module, attr


def load_attr(ref: str, where: str) -> Any:
    """The object `attr` of module `module` for `module:attr` (dotted attrs walk into the module)."""
    module_name, attr = split_reference(ref, where)
    obj: Any = import_module(module_name, where)
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{where}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def import_all(modules: tuple[str, ...] | list[str], where: str) -> None:
    """Import each module (they may register Gymnasium ids or define user classes)."""
    for i, name in enumerate(modules):
        import_module(name, f"{where}.{i}")


def resolve_env(
    ref: str, kwargs: Mapping[str, Any], max_episode_steps: int | None, env_id: str, where: str
) -> EnvSpec:
    """An `EnvSpec` for a Gymnasium id (`Hopper-v5`, `my_pkg:Arm-v0`) or an entry point (`my_pkg:ArmEnv`).

    An id keeps its registration (entry point, wrappers, time limit) with `kwargs` merged in; an entry
    point is an env class or a function returning an env. Every episode must end somewhere, so an env
    with no time limit needs `max_episode_steps`."""
    if is_reference(ref):
        module, attr = split_reference(ref, where)
        import_module(module, where)  # it may register `attr` as a Gymnasium id
        obj = load_attr(ref, where) if attr not in gym.registry else None
        if obj is None:
            base = gym.spec(attr)
        elif callable(obj):
            base = EnvSpec(id=env_id, entry_point=ref)
        else:
            raise ConfigError(
                f"{where}: {ref} is a {type(obj).__name__}, not an env class, env factory or registered id"
            )
    elif ref in gym.registry:
        base = gym.spec(ref)
    else:
        raise ConfigError(
            f"{where}: {ref!r} is not a registered Gymnasium id (allowed: a registered id - list the module "
            "that registers it under imports: - or module:Class naming an env class)"
        )
    steps = max_episode_steps if max_episode_steps is not None else base.max_episode_steps
    if steps is None:
        raise ConfigError(
            f"{where}: {ref} has no time limit (allowed: set max_episode_steps, so every episode ends)"
        )
    return replace(base, id=env_id, kwargs={**(base.kwargs or {}), **kwargs}, max_episode_steps=steps)
