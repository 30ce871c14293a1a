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
from types import ModuleType
from typing import Any

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
