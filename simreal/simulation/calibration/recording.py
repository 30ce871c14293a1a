"""Recorded target episodes: what calibration fits to, from a live run or from a team's own log file.

A log is a NumPy `.npz` file with three arrays, one row per control step, episodes one after another:

| array | shape | meaning |
|---|---|---|
| `observations` | `(N, obs_dim)` float | what the robot reported at the step (the env's observation vector) |
| `actions` | `(N, act_dim)` float | the command sent after that observation, in the env's action units |
| `episode_starts` | `(N,)` bool | true on the first row of each episode (row 0 must be one) |

Consecutive rows of one episode form a transition (observation, action -> next observation); the last
row of an episode has no successor, so its action is never used (record any value, e.g. zeros). A live
calibration writes its episodes in this same format (`episodes.npz`), and reads them back through the
same path as a log.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simreal.schema import ConfigError

ARRAYS = ("observations", "actions", "episode_starts")


@dataclass(frozen=True)
class Episode:
    """One recorded episode: `obs` `(T + 1, obs_dim)` and the commands `actions` `(T, act_dim)` sent after
    each observation but the last."""

    obs: np.ndarray
    actions: np.ndarray

    @property
    def steps(self) -> int:
        return len(self.actions)


@dataclass(frozen=True)
class Recording:
    """Recorded episodes of one target, in order."""

    episodes: tuple[Episode, ...]

    @property
    def steps(self) -> int:
        """Transitions in all episodes."""
        return sum(e.steps for e in self.episodes)

    @property
    def obs_dim(self) -> int:
        return int(self.episodes[0].obs.shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.episodes[0].actions.shape[1])

    def arrays(self) -> dict[str, np.ndarray]:
        """The log-file arrays (the last row of each episode carries zeros as its action)."""
        obs = np.concatenate([e.obs for e in self.episodes])
        actions = np.concatenate(
            [np.vstack([e.actions, np.zeros((1, e.actions.shape[1]))]) for e in self.episodes]
        )
        starts = np.concatenate([np.arange(len(e.obs)) == 0 for e in self.episodes])
        return {"observations": obs, "actions": actions, "episode_starts": starts}


def from_arrays(observations: np.ndarray, actions: np.ndarray, starts: np.ndarray, where: str) -> Recording:
    """Episodes from the log-file arrays, checked; errors are one line naming `where` and the array."""
    obs, act = np.asarray(observations), np.asarray(actions)
    first = np.asarray(starts)
    if obs.ndim != 2 or act.ndim != 2 or first.ndim != 1:
        raise ConfigError(
            f"{where}: observations and actions must be 2-d (rows x dims) and episode_starts 1-d, got "
            f"shapes {obs.shape}, {act.shape}, {first.shape}"
        )
    if not len(obs) == len(act) == len(first):
        raise ConfigError(
            f"{where}: the arrays disagree in length: observations {len(obs)}, actions {len(act)}, "
            f"episode_starts {len(first)} rows (allowed: one row per step in each)"
        )
    if len(obs) == 0 or not bool(first[0]):
        raise ConfigError(f"{where}: episode_starts: row 0 must start an episode (and the log hold a row)")
    for name, array in (("observations", obs), ("actions", act)):
        if not np.issubdtype(array.dtype, np.number) or not np.all(np.isfinite(array)):
            raise ConfigError(f"{where}: {name}: must be finite numbers")
    bounds = [*np.flatnonzero(first.astype(bool)), len(obs)]
    episodes = tuple(
        Episode(obs[a:b].astype(np.float64), act[a : b - 1].astype(np.float64))
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        if b - a >= 2
    )
    if not episodes:
        raise ConfigError(f"{where}: no episode has two rows (a transition needs an observation after it)")
    return Recording(episodes)


def load_log(path: Path) -> Recording:
    """A log file's episodes (see the module docstring for its format)."""
    if not path.is_file():
        raise ConfigError(f"--from-log: {path}: file not found")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ConfigError(f"--from-log: {path}: not a NumPy .npz file ({err})") from None
    missing = [name for name in ARRAYS if name not in data.files]
    if missing:
        raise ConfigError(
            f"--from-log: {path}: missing arrays {', '.join(missing)} (a log holds {', '.join(ARRAYS)})"
        )
    return from_arrays(data["observations"], data["actions"], data["episode_starts"], f"--from-log: {path}")


def check_dims(recording: Recording, obs_dim: int, act_dim: int, where: str) -> None:
    """The recording's dimensions against the task's env."""
    if recording.act_dim != act_dim:
        raise ConfigError(
            f"{where}: actions have {recording.act_dim} dimensions, the task's env takes {act_dim}"
        )
    if recording.obs_dim != obs_dim:
        raise ConfigError(
            f"{where}: observations have {recording.obs_dim} dimensions, the task's env gives {obs_dim}"
        )
