"""Self-contained, pickle-free policy artifacts and training checkpoints, written atomically.

A policy artifact carries weights, optimizer states, observation-normalization statistics, spaces and
the config snapshot (JSON), so evaluation never rebuilds statistics from scratch. Everything is
plain tensors, numbers and strings: it loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import operator
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.running_mean_std import RunningMeanStd

FORMAT = "simreal-v1"


class ArtifactError(ValueError):
    """A missing, corrupt or incompatible artifact, named with its path."""


def atomic_save(obj: Any, path: str | Path) -> None:
    """`torch.save` to a temporary file beside `path`, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(text: str, path: str | Path) -> None:
    """Write text through a temporary file and a rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def safe_load(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Load one of our files with `weights_only=True`; clear errors for missing or corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: file not found")
    try:
        data = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise ArtifactError(f"{path}: corrupt or not a simreal file ({type(err).__name__}: {err})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ArtifactError(f"{path}: not a simreal file (expected format {FORMAT!r})")
    return data


def describe_space(space: gym.Space[Any]) -> dict[str, Any]:
    """A JSON description of a space, enough to check compatibility and to rebuild a policy."""
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": np.asarray(space.low, dtype=np.float64).ravel().tolist(),
            "high": np.asarray(space.high, dtype=np.float64).ravel().tolist(),
        }
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n)}
    if isinstance(space, gym.spaces.Dict):
        return {"type": "Dict", "spaces": {k: describe_space(v) for k, v in space.spaces.items()}}
    return {"type": type(space).__name__, "repr": repr(space)}


def check_spaces(source: dict[str, Any], target_obs: gym.Space[Any], target_act: gym.Space[Any]) -> None:
    """Raise naming both spaces when the source policy's spaces do not fit the target env."""
    for kind, target in (("observation", target_obs), ("action", target_act)):
        want = describe_space(target)
        have = source[f"{kind}_space"]
        same = have.get("type") == want.get("type") and have.get("shape") == want.get("shape")
        same = (
            same
            and have.get("n") == want.get("n")
            and have.get("spaces", {}).keys() == want.get("spaces", {}).keys()
        )
        if kind == "action" and same and want["type"] == "Box":
            same = np.allclose(have["low"], want["low"]) and np.allclose(have["high"], want["high"])
        if not same:
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
