"""Observation -> simulator state for the packaged Gymnasium MuJoCo tasks (a task file's `state_from_obs`).

Each function takes the unwrapped env and one observation vector and returns the joint state `(qpos,
qvel)` the observation shows; the caller sets it (`MujocoEnv.set_state`). What an observation leaves
out is set where the dynamics do not depend on it: HalfCheetah's x position (it does not observe it)
at 0, Reacher's target velocity (the target does not move) at 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


def inverted_pendulum(env: Any, obs: FloatArray) -> tuple[FloatArray, FloatArray]:
    """InvertedPendulum-v5 observes `[qpos (cart, hinge), qvel (cart, hinge)]`."""
    return np.asarray(obs[:2], dtype=np.float64), np.asarray(obs[2:4], dtype=np.float64)


def reacher(env: Any, obs: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Reacher-v5 observes `[cos q0, cos q1, sin q0, sin q1, target x, y, qvel0, qvel1, tip - target]`."""
    angles = np.arctan2(obs[2:4], obs[0:2])
    qpos = np.array([angles[0], angles[1], obs[4], obs[5]], dtype=np.float64)
    qvel = np.array([obs[6], obs[7], 0.0, 0.0], dtype=np.float64)
    return qpos, qvel


def half_cheetah(env: Any, obs: FloatArray) -> tuple[FloatArray, FloatArray]:
    """HalfCheetah-v5 observes `[qpos without the root x (8), qvel (9)]`."""
    return np.r_[0.0, obs[:8]].astype(np.float64), np.asarray(obs[8:17], dtype=np.float64)
