"""Simulated tasks, registered under the `simreal/` namespace.

Each task has three kinds of ids:
- nominal sim:    `simreal/<Name>-v0`              the physics as modelled
- randomized sim: `simreal/<Name>-Rand-v0`         physics and sensing varied per episode (for pretraining)
- targets:        `simreal/<Name>-Target-<T>-v0`   fixed shifted physics plus real-like effects

Tasks with `pixels=True` have the same three seen through a camera (rendered RGB frames, stacked):
`simreal/<Name>-Pixels-v0`, `simreal/<Name>-Pixels-Rand-v0` (physics and visuals varied per episode) and
`simreal/<Name>-Pixels-Target-<T>-v0` (the target plus a fixed visual shift). Their settings are the
`pixels:` section of the task's YAML.

Rendering is headless: `MUJOCO_GL=egl` (Mesa's software EGL works on CPU-only machines) is set below,
before anything imports `mujoco`, because MuJoCo and Gymnasium's renderer pick their OpenGL backend from
it; the default (GLFW) needs a display. An explicit setting from the environment wins.

Randomized, target and pixel ids are built from the task's YAML (`configs/tasks/<key>.yaml`) by
`simreal.variants`; they are referenced here by entry-point string only, so `envs` stays free of
framework imports.

Example:
    >>> import gymnasium as gym, envs
    >>> env = gym.make("simreal/InvertedPendulum-Target-Latency-v0")
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from gymnasium.envs.registration import register

# Before anything imports mujoco (none of the imports above does; see the module docstring).
os.environ.setdefault("MUJOCO_GL", "egl")


@dataclass(frozen=True)
class Task:
    """A task: its YAML key, id stem, nominal entry point and the targets its YAML declares.

    `pixels`: also register pixel ids. `image_size_kwargs`: the constructor arguments that set the side
    of the rendered frame (Gymnasium MuJoCo envs: width and height).
    """

    key: str
    name: str
    entry_point: str
    max_episode_steps: int
    targets: tuple[str, ...]
    pixels: bool = False
    image_size_kwargs: tuple[str, ...] = ("width", "height")

    @property
    def nominal_id(self) -> str:
        return f"simreal/{self.name}-v0"

    @property
    def randomized_id(self) -> str:
        return f"simreal/{self.name}-Rand-v0"

    def target_id(self, target: str) -> str:
        return f"simreal/{self.name}-Target-{_camel(target)}-v0"

    @property
    def pixel_nominal_id(self) -> str:
        return f"simreal/{self.name}-Pixels-v0"

    @property
    def pixel_randomized_id(self) -> str:
        return f"simreal/{self.name}-Pixels-Rand-v0"

    def pixel_target_id(self, target: str) -> str:
        return f"simreal/{self.name}-Pixels-Target-{_camel(target)}-v0"


def _camel(name: str) -> str:
    return name.title().replace("_", "")


TASKS: dict[str, Task] = {
    "inverted_pendulum": Task(
        key="inverted_pendulum",
        name="InvertedPendulum",
        entry_point="gymnasium.envs.mujoco.inverted_pendulum_v5:InvertedPendulumEnv",
        max_episode_steps=1000,
        targets=("latency", "camera", "extrapolate"),
        pixels=True,
    ),
    "half_cheetah": Task(
        key="half_cheetah",
        name="HalfCheetah",
        entry_point="gymnasium.envs.mujoco.half_cheetah_v5:HalfCheetahEnv",
        max_episode_steps=1000,
        targets=("shifted", "extrapolate"),
    ),
    "reacher": Task(
        key="reacher",
        name="Reacher",
        entry_point="gymnasium.envs.mujoco.reacher_v5:ReacherEnv",
        max_episode_steps=50,
        targets=("shifted", "extrapolate"),
    ),
    "kuka_reach": Task(
        key="kuka_reach",
        name="KukaReach",
        entry_point="envs.kuka_reach:KukaReachEnv",
        max_episode_steps=100,
        targets=("shifted", "extrapolate"),
        pixels=True,
        image_size_kwargs=("image_size",),
    ),
}


def _register_all() -> None:
    for task in TASKS.values():
        register(task.nominal_id, entry_point=task.entry_point, max_episode_steps=task.max_episode_steps)
        register(
            task.randomized_id, entry_point="simreal.variants:make_randomized", kwargs={"task": task.key}
        )
        for target in task.targets:
            register(
                task.target_id(target),
                entry_point="simreal.variants:make_target",
                kwargs={"task": task.key, "target": target},
            )
        if task.pixels:
            _register_pixels(task)


def _register_pixels(task: Task) -> None:
    register(
        task.pixel_nominal_id, entry_point="simreal.variants:make_pixel_nominal", kwargs={"task": task.key}
    )
    register(
        task.pixel_randomized_id,
        entry_point="simreal.variants:make_pixel_randomized",
        kwargs={"task": task.key},
    )
    for target in task.targets:
        register(
            task.pixel_target_id(target),
            entry_point="simreal.variants:make_pixel_target",
            kwargs={"task": task.key, "target": target},
        )


_register_all()
