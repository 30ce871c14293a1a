"""The simulated tasks: env classes, their nominal parameters and the shared parameter vocabulary.

- `envs.params`: the physics and visual parameter names every task exposes, with their physical bounds;
- `envs.kuka_reach`: the KUKA iiwa reaching task in PyBullet (and `envs.kuka_camera`, what its camera sees).

The tasks themselves are data: `configs/tasks/<key>.yaml` names each task's env (a Gymnasium id such as
`InvertedPendulum-v5`, or an env class here such as `envs.kuka_reach:KukaReachEnv`), its randomization
and its targets. `import simreal` registers their ids (`simreal/<Name>-v0`, `-Rand-v0`, `-Target-<T>-v0`,
see `simreal.simulation.registry`) through the same path a user's own task file takes. This package
never imports the framework.

Rendering is headless: `MUJOCO_GL=egl` (Mesa's software EGL works on CPU-only machines) is set below,
before anything imports `mujoco`, because MuJoCo and Gymnasium's renderer pick their OpenGL backend from
it; the default (GLFW) needs a display. An explicit setting from the environment wins.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")
