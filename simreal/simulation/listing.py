"""What `simreal envs` prints about a task: its ids, its parameters with nominal values, its targets."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from simreal.simulation.physics import PhysicsSpace
from simreal.simulation.references import is_reference
from simreal.simulation.registry import Task
from simreal.simulation.sampling import ParamSpace
from simreal.simulation.spaces import space_mismatch
from simreal.simulation.visuals import VisualSpace


def _values(space: ParamSpace, param: str) -> str:
    names = space.elements(param)
    try:
        values = np.asarray(space.get(param), dtype=np.float64)
    except ValueError:  # e.g. a free camera whose look-at point is only known after the first frame
        return ", ".join(names)
    return ", ".join(f"{n}={v:.4g}" for n, v in zip(names, values, strict=True))


def _parameters(space: ParamSpace) -> list[str]:
    return [f"      {param}: {_values(space, param)}" for param in space.names() if space.elements(param)]


def describe_task(task: Task) -> str:
    """A few indented lines: ids, physics (and visual) parameters per element at nominal, targets."""
    spec = task.spec
    lines = [f"{task.name} ({task.source}): env {spec.env}"]
    if spec.description:
        lines.append(f"  {spec.description}")
    lines.append(f"  nominal {task.nominal_id}   randomized {task.randomized_id}")
    if spec.pixels is not None:
        lines.append(
            f"  pixels  {task.pixel_nominal_id}   {task.pixel_randomized_id}   -Pixels-Target-<T>-v0"
        )
    env: gym.Env[Any, Any] = gym.make(task.nominal_id)
    try:
        lines.append("  physics parameters (nominal values):")
        params = [*spec.randomization.params, *(p for t in spec.targets.values() for p in t.physics)]
        lines += _parameters(PhysicsSpace(env, [p.param for p in params if is_reference(p.param)]))
    finally:
        env.close()
    if spec.pixels is not None:
        kwargs: dict[str, Any] = {name: spec.pixels.image_size for name in spec.pixels.image_size_kwargs}
        env = gym.make(task.nominal_id, **{"render_mode": "rgb_array", **kwargs, **spec.pixels.env_kwargs})
        try:
            lines.append("  visual parameters (nominal values):")
            lines += _parameters(VisualSpace(env))
        finally:
            env.close()
    for name, target in spec.targets.items():
        flags = " [extrapolation]" if target.extrapolation else ""
        flags += f" [env {target.env}]" if target.env else ""
        lines.append(f"  target {task.target_id(name)}{flags}: {target.description}")
        if target.env and not target.exclusive:  # its own env: its spaces may differ (a robot is not opened)
            mismatch = _mismatch(task, name)
            if mismatch:
                lines.append(f"    ! {mismatch}: a policy trained on the source cannot run on it")
    return "\n".join(lines) + "\n"


def _mismatch(task: Task, target: str) -> str | None:
    """Why a source policy cannot run on the target (its spaces, or its env failing to build), or None."""
    source: gym.Env[Any, Any] = gym.make(task.nominal_id)
    try:
        other: gym.Env[Any, Any] = gym.make(task.target_id(target))
    except Exception as err:  # noqa: BLE001 - a user's env can fail in any way while it is built
        source.close()
        return f"its env cannot be built ({type(err).__name__}: {err})"
    try:
        return space_mismatch(source, other)
    finally:
        other.close()
        source.close()
