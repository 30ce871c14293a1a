"""Self-contained, pickle-free policy artifacts and training checkpoints, written atomically.

A policy artifact carries weights, optimizer states, observation-normalization statistics, spaces and
the config snapshot (JSON), so evaluation never rebuilds statistics from scratch. Everything is
plain tensors, numbers and strings: it loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import hashlib
import json
import operator
import os
import pickle
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.running_mean_std import RunningMeanStd

from simreal.simulation.spaces import describe_space, spaces_match

FORMAT = "simreal-v1"


class ArtifactError(ValueError):
    """A missing, corrupt or incompatible artifact, named with its path."""


def _atomic_write(path: str | Path, mode: str, write: Callable[[Any], None]) -> None:
    """`write(file)` into a temporary file beside `path`, fsync, then rename over it: readers see the old
    file or the new one, never half of one, and an interrupted write leaves the old file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save(obj: Any, path: str | Path) -> None:
    """`torch.save` atomically (see `_atomic_write`)."""
    _atomic_write(path, "wb", lambda fh: torch.save(obj, fh))


def atomic_save_npz(arrays: dict[str, Any], path: str | Path) -> None:
    """`numpy.savez_compressed` atomically (see `_atomic_write`)."""
    _atomic_write(path, "wb", lambda fh: np.savez_compressed(fh, **arrays))


def atomic_write_text(text: str, path: str | Path) -> None:
    """Write text atomically (see `_atomic_write`)."""
    _atomic_write(path, "w", lambda fh: fh.write(text))


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes (an artifact's content hash, for provenance)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _detail(err: Exception) -> str:
    """The informative line of a loader error (torch's weights-only errors put it in the middle)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    useful = [
        line
        for line in lines
        if not line.startswith(("Weights only load failed", "Please file", "Check the"))
    ]
    return (useful or lines or [type(err).__name__])[0]


def safe_load(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Load one of our files with `weights_only=True`; clear errors for missing or corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: file not found")
    try:
        data = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        blocked = re.search(r"unsupported GLOBAL (\S+)", str(err))
        if blocked is None:
            raise ArtifactError(
                f"{path}: corrupt or not a simreal file (unreadable: {_detail(err)})"
            ) from None
        # A pickle payload naming code to run: simreal never writes one. torch's weights-only loader
        # refused it; nothing in the file was run.
        raise ArtifactError(
            f"{path}: not a simreal artifact, or tampered with (it asks to load {blocked.group(1)}, "
            "which simreal never writes; refused without running it)"
        ) from None
    except Exception as err:  # noqa: BLE001 - a truncated or foreign file fails in many ways
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ArtifactError(
            f"{path}: corrupt or not a simreal file ({type(err).__name__}: {first})"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ArtifactError(f"{path}: not a simreal file (expected format {FORMAT!r})")
    return data


def space_from(desc: dict[str, Any]) -> gym.Space[Any]:
    """Rebuild a space from `describe_space`'s JSON (Box, Discrete and Dict of those)."""
    kind = desc.get("type")
    if kind == "Box":
        shape = tuple(desc["shape"])
        dtype = np.dtype(desc["dtype"])
        low = np.asarray(desc["low"], dtype=np.float64).reshape(shape).astype(dtype)
        high = np.asarray(desc["high"], dtype=np.float64).reshape(shape).astype(dtype)
        return gym.spaces.Box(low, high, shape=shape, dtype=dtype)
    if kind == "Discrete":
        return gym.spaces.Discrete(int(desc["n"]))
    if kind == "Dict":
        return gym.spaces.Dict({k: space_from(v) for k, v in desc["spaces"].items()})
    raise ArtifactError(f"space {kind}: cannot be rebuilt from an artifact (allowed: Box, Discrete, Dict)")


class SpacesEnv(gym.Env[Any, Any]):
    """An env that only has spaces: enough to rebuild an SB3 model from an artifact, never stepped.

    Rebuilding a policy this way opens no instance of the env it will act on (a target may be a robot)."""

    def __init__(self, observation_space: gym.Space[Any], action_space: gym.Space[Any]) -> None:
        self.observation_space = observation_space
        self.action_space = action_space  # reset() and step() stay gym.Env's NotImplementedError

    @classmethod
    def of(cls, meta: dict[str, Any]) -> SpacesEnv:
        """The spaces an artifact's metadata records."""
        return cls(space_from(meta["observation_space"]), space_from(meta["action_space"]))


def check_spaces(source: dict[str, Any], target_obs: gym.Space[Any], target_act: gym.Space[Any]) -> None:
    """Raise naming both spaces when the source policy's spaces do not fit the target env."""
    for kind, target in (("observation", target_obs), ("action", target_act)):
        have = source[f"{kind}_space"]
        if not spaces_match(have, target, bounds=kind == "action"):
            raise ArtifactError(
                f"{kind} spaces do not match: source {_short(have)} vs target {target} - "
                "the pretrained policy cannot be transferred to this env"
            )


def _short(desc: dict[str, Any]) -> str:
    if desc.get("type") == "Box":
        return f"Box(shape={tuple(desc['shape'])}, dtype={desc['dtype']})"
    return json.dumps(desc)[:120]


def torch_state(model: BaseAlgorithm) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Every state dict (policy, optimizers) and torch variable (e.g. SAC's log_ent_coef) of a model."""
    names, variables = model._get_torch_save_params()
    states = {name: operator.attrgetter(name)(model).state_dict() for name in names}
    tensors = {name: operator.attrgetter(name)(model).detach().clone() for name in variables}
    return states, tensors


def load_torch_state(
    model: BaseAlgorithm,
    states: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    include_optimizers: bool = True,
) -> None:
    """Inverse of `torch_state`: load policy weights (always) and optimizer states (optionally)."""
    for name, state in states.items():
        if not include_optimizers and "optimizer" in name:
            continue
        operator.attrgetter(name)(model).load_state_dict(state)
    for name, value in tensors.items():
        with torch.no_grad():
            operator.attrgetter(name)(model).copy_(value)


def rms_state(rms: RunningMeanStd | None) -> dict[str, Any] | None:
    if rms is None:
        return None
    return {"mean": torch.as_tensor(rms.mean), "var": torch.as_tensor(rms.var), "count": float(rms.count)}


def rms_from(state: dict[str, Any] | None) -> RunningMeanStd | None:
    if state is None:
        return None
    rms = RunningMeanStd(shape=tuple(state["mean"].shape))
    rms.mean = state["mean"].cpu().numpy().astype(np.float64)
    rms.var = state["var"].cpu().numpy().astype(np.float64)
    rms.count = float(state["count"])
    return rms


@dataclass
class PolicyArtifact:
    """A trained policy: weights, normalization statistics and JSON metadata (config, spaces, provenance)."""

    states: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    obs_rms: RunningMeanStd | None
    meta: dict[str, Any] = field(default_factory=dict)
    backbone: dict[str, torch.Tensor] | None = None


def save_policy(
    model: BaseAlgorithm,
    obs_rms: RunningMeanStd | None,
    meta: dict[str, Any],
    path: Path,
    backbone: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write a self-contained policy artifact atomically (`backbone`: a frozen encoder kept outside the
    policy, e.g. cached-feature CNNs, with its BatchNorm statistics)."""
    states, tensors = torch_state(model)
    full_meta = dict(meta)
    full_meta["observation_space"] = describe_space(model.observation_space)
    full_meta["action_space"] = describe_space(model.action_space)
    full_meta["num_timesteps"] = int(model.num_timesteps)
    atomic_save(
        {
            "format": FORMAT,
            "kind": "policy",
            "states": states,
            "tensors": tensors,
            "obs_rms": rms_state(obs_rms),
            "backbone": backbone,
            "meta_json": json.dumps(full_meta),
        },
        path,
    )


def load_policy(path: str | Path, device: torch.device | str = "cpu") -> PolicyArtifact:
    """Read a policy artifact written by `save_policy`."""
    data = safe_load(path, device)
    if data.get("kind") != "policy":
        raise ArtifactError(f"{path}: not a policy artifact (kind {data.get('kind')!r})")
    return PolicyArtifact(
        states=data["states"],
        tensors=data["tensors"],
        obs_rms=rms_from(data["obs_rms"]),
        meta=json.loads(data["meta_json"]),
        backbone=data.get("backbone"),
    )
