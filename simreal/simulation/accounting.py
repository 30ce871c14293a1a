"""Every step taken on a target env, counted: a target may be a real robot, whose time and wear are real.

A `TargetLedger` belongs to one stage. Every target env the stage builds is wrapped, innermost (around
the target's own env, below any effect - so an effect that holds a command for extra steps is counted
as the robot sees it), in `CountSteps`, which adds each step to the ledger under what the stage is doing
now (`ledger.doing("evaluation")`: training, evaluation, other) and tracks how many instances are open.
The training stages write each ledger to `target_steps.json` (at checkpoints and at the end: the steps an
interrupted attempt took after its last checkpoint are not in the count); the report sums them per
variant.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, SupportsFloat

import gymnasium as gym

from simreal.schema import ConfigError

Purpose = Literal["train", "evaluation", "other"]
PURPOSES: tuple[Purpose, ...] = ("train", "evaluation", "other")
STEPS = "target_steps.json"
"""Where a stage records its ledger."""


@dataclass
class TargetLedger:
    """Target steps by purpose and target instances (open now, at most at once, opened in all)."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PURPOSES, 0))
    purpose: Purpose = "train"
    open_now: int = 0
    max_open: int = 0
    opened: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @contextlib.contextmanager
    def doing(self, purpose: Purpose) -> Iterator[None]:
        """Count the steps inside under `purpose`."""
        before, self.purpose = self.purpose, purpose
        try:
            yield
        finally:
            self.purpose = before

    carried: dict[str, int] = field(default_factory=dict)  # what an interrupted earlier attempt recorded

    @classmethod
    def resumed(cls, recorded: dict[str, int] | None) -> TargetLedger:
        """A ledger that goes on from what an earlier attempt of the stage recorded (None: a fresh one)."""
        return cls(carried=dict(recorded or {}))

    def as_dict(self) -> dict[str, int]:
        """Counts as plain data, including what earlier attempts of the stage recorded."""
        data = {**self.counts, "total": self.total, "max_open": self.max_open, "opened": self.opened}
        for key in (*PURPOSES, "total", "opened"):
            data[key] += self.carried.get(key, 0)
        data["max_open"] = max(data["max_open"], self.carried.get("max_open", 0))
        return data


def read_json(path: Path) -> Any:
    """A JSON file's data, or None where there is none."""
    return json.loads(path.read_text()) if path.is_file() else None


class CountSteps(gym.Wrapper[Any, Any, Any, Any]):
    """Counts every step of the env it wraps into a ledger, and the instance while it is open."""

    def __init__(self, env: gym.Env[Any, Any], ledger: TargetLedger) -> None:
        super().__init__(env)
        self.ledger = ledger
        self._open = True
        ledger.opened += 1
        ledger.open_now += 1
        ledger.max_open = max(ledger.max_open, ledger.open_now)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        self.ledger.counts[self.ledger.purpose] += 1
        return self.env.step(action)

    def close(self) -> None:
        if self._open:
            self._open = False
            self.ledger.open_now -= 1
        super().close()


def counted_env(env_id: str, ledger: TargetLedger, kwargs: dict[str, Any]) -> gym.Env[Any, Any]:
    """A target env, every step counted into `ledger`: innermost for simreal's own target ids (below the
    effects), around the env otherwise."""
    entry = str(gym.spec(env_id).entry_point)
    if entry.endswith("make_target"):
        return gym.make(env_id, ledger=ledger, **kwargs)
    return CountSteps(gym.make(env_id, **kwargs), ledger)


def lock_dir() -> Path:
    """Where exclusive targets' host-wide locks live (`SIMREAL_LOCK_DIR`, else the temp dir)."""
    return Path(os.environ.get("SIMREAL_LOCK_DIR") or Path(tempfile.gettempdir()) / "simreal-locks")


class ExclusiveLock:
    """The host-wide lock of an exclusive target (a robot): taken before an instance is built, held while
    it is open, so a second instance - in this process or another (a run's target stage, a calibration, a
    diagnosis) - is refused in one line instead of driving the same hardware twice. Released by `release`
    (its instance's `close()`) or the process's end."""

    def __init__(self, name: str) -> None:
        path = lock_dir() / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 - held for the instance's life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise ConfigError(
                f"target {name}: exclusive, and an instance is open already ({holder}) - one at a time "
                "(allowed: wait for it to close)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._handle: Any = handle

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


class HoldExclusive(gym.Wrapper[Any, Any, Any, Any]):
    """An exclusive target's instance, releasing its `ExclusiveLock` when it closes."""

    def __init__(self, env: gym.Env[Any, Any], lock: ExclusiveLock) -> None:
        super().__init__(env)
        self._lock = lock

    def close(self) -> None:
        self._lock.release()
        super().close()
