"""simreal: sim-to-real transfer for reinforcement learning.

Importing it registers the packaged tasks' Gymnasium ids (`simreal/<Name>-v0`, `-Rand-v0`,
`-Target-<T>-v0`, ...). Bring your own task with `register_task("my_arm.yaml")` (or `task:` in an
experiment config): it goes through exactly the same path.

Example:
    >>> import gymnasium as gym, simreal
    >>> env = gym.make("simreal/InvertedPendulum-Target-Latency-v0")
"""

import envs  # noqa: F401 - first: sets MUJOCO_GL before anything imports mujoco
from simreal.simulation.physics import CustomParam
from simreal.simulation.registry import Task, get_task, register_packaged, register_task

__version__ = "0.1.0"
__all__ = ["CustomParam", "Task", "get_task", "register_task", "run"]

register_packaged()


def run(*args: object, **kwargs: object) -> dict[str, object]:
    """Run an experiment and return its result document: `simreal.api.run` (imported on first use, so
    `import simreal` stays light)."""
    from simreal.api import run as run_experiment

    return run_experiment(*args, **kwargs)  # type: ignore[arg-type]
