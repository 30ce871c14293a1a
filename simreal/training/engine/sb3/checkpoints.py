"""Resumable training state: model and optimizers, normalization, step counts, RNG states, replay buffer.

Written atomically at the start of a rollout (after the previous update), so every counted step has
been trained on. Loaded with `weights_only=True`: no pickle.
"""

from __future__ import annotations

from pathlib import Path
from random import getstate as py_rng_state  # saved for resume; nothing here draws from it
from random import setstate as set_py_rng_state
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.running_mean_std import RunningMeanStd

from simreal.training.engine.artifacts import (
    FORMAT,
    ArtifactError,
    atomic_save,
    load_torch_state,
    rms_from,
    rms_state,
    safe_load,
    torch_state,
)

_BUFFER_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def _rng_state() -> dict[str, Any]:
    # SB3 draws from the global numpy RNG (e.g. replay sampling), so resuming must restore it.
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # noqa: NPY002
    return {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "numpy_rest": [str(kind), int(pos), int(has_gauss), float(cached)],
        "python": list(py_rng_state()[1]),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, pos, has_gauss, cached = state["numpy_rest"]
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state((kind, keys, pos, has_gauss, cached))  # noqa: NPY002
    set_py_rng_state((3, tuple(state["python"]), None))


def _buffer_state(buffer: ReplayBuffer) -> dict[str, Any]:
    size = buffer.buffer_size if buffer.full else buffer.pos
    arrays: dict[str, Any] = {}
    for name in _BUFFER_FIELDS:
        value = getattr(buffer, name, None)
        if isinstance(value, np.ndarray):
            arrays[name] = torch.from_numpy(np.ascontiguousarray(value[:size]))
        elif isinstance(value, dict):
            arrays[name] = {k: torch.from_numpy(np.ascontiguousarray(v[:size])) for k, v in value.items()}
    return {"arrays": arrays, "pos": int(buffer.pos), "full": bool(buffer.full)}


def _load_buffer(buffer: ReplayBuffer, state: dict[str, Any]) -> None:
    for name, value in state["arrays"].items():
        target = getattr(buffer, name)
        if isinstance(value, dict):
            for k, v in value.items():
                target[k][: len(v)] = v.numpy()
        else:
            target[: len(value)] = value.numpy()
    buffer.pos = state["pos"]
    buffer.full = state["full"]


def save_checkpoint(
    path: Path,
    model: BaseAlgorithm,
    obs_rms: RunningMeanStd | None,
    extra: dict[str, Any],
) -> None:
    """Everything needed to continue training `model` from here; `extra` holds plain data (eval history)."""
    states, tensors = torch_state(model)
    data: dict[str, Any] = {
        "format": FORMAT,
        "kind": "checkpoint",
        "states": states,
        "tensors": tensors,
        "obs_rms": rms_state(obs_rms),
        "num_timesteps": int(model.num_timesteps),
        "n_updates": int(getattr(model, "_n_updates", 0)),
        "rng": _rng_state(),
        "extra": extra,
    }
    if isinstance(model, OffPolicyAlgorithm) and isinstance(model.replay_buffer, ReplayBuffer):
        data["replay_buffer"] = _buffer_state(model.replay_buffer)
    atomic_save(data, path)


def load_checkpoint(path: Path, model: BaseAlgorithm) -> tuple[RunningMeanStd | None, dict[str, Any]]:
    """Restore `model` in place from `path`; returns (normalization statistics, extra)."""
    data = safe_load(path, model.device)
    if data.get("kind") != "checkpoint":
        raise ArtifactError(f"{path}: not a checkpoint (kind {data.get('kind')!r})")
    try:
        load_torch_state(model, data["states"], data["tensors"], include_optimizers=True)
    except (RuntimeError, KeyError, ValueError) as err:
        raise ArtifactError(f"{path}: does not fit this model ({err})") from None
    model.num_timesteps = data["num_timesteps"]
    if hasattr(model, "_n_updates"):
        model._n_updates = data["n_updates"]
    if "replay_buffer" in data and isinstance(model, OffPolicyAlgorithm):
        assert isinstance(model.replay_buffer, ReplayBuffer)
        _load_buffer(model.replay_buffer, data["replay_buffer"])
    _set_rng_state(data["rng"])
    return rms_from(data["obs_rms"]), data["extra"]


def checkpoint_steps(path: Path) -> int:
    """How many env steps the checkpoint at `path` had trained (without loading it into a model)."""
    return int(safe_load(path)["num_timesteps"])
