"""PyBullet, imported on first use: its C extension prints a build banner when it loads, so a command that
never builds a PyBullet env (a MuJoCo task, a report) should not load it.

    >>> from envs.bullet import p
    >>> client = p.connect(p.DIRECT)  # pybullet is imported here
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class _OnFirstUse:
    """Stands in for the `pybullet` module; the first attribute looked up imports it. Each attribute is
    looked up through it once, then kept on the instance (a step calls a dozen of them)."""

    _module: ModuleType | None = None

    def __getattr__(self, name: str) -> Any:
        if _OnFirstUse._module is None:
            _OnFirstUse._module = importlib.import_module("pybullet")
        value = getattr(_OnFirstUse._module, name)
        setattr(self, name, value)
        return value


p: Any = _OnFirstUse()
