"""Gymnasium spaces as JSON, and whether a policy made for one env's spaces fits another's.

`space_mismatch` names the space that differs in the env's own terms (before an experiment's observation
wrappers append past actions or privileged values), the action space first: a target whose motors differ
is an action mismatch, even though it also changes what an action history adds to the observation.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


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


def spaces_match(have: dict[str, Any], want: gym.Space[Any], bounds: bool) -> bool:
    """Whether a described space fits `want`: same type, shape, dtype and keys (and bounds, if asked)."""
    desc = describe_space(want)
    same = all(have.get(k) == desc.get(k) for k in ("type", "shape", "dtype", "n"))
    same = same and have.get("spaces", {}).keys() == desc.get("spaces", {}).keys()
    if same and bounds and desc["type"] == "Box":
        same = np.allclose(have["low"], desc["low"]) and np.allclose(have["high"], desc["high"])
    return bool(same)


def short(space: gym.Space[Any]) -> str:
    """A space in a few characters: `Box(shape=(4,), float32)`."""
    desc = describe_space(space)
    if desc["type"] == "Box":
        return f"Box(shape={tuple(desc['shape'])}, {desc['dtype']})"
    return str(space)


def space_mismatch(source: gym.Env[Any, Any], target: gym.Env[Any, Any]) -> str | None:
    """Which space of `target` a policy trained on `source` cannot use (None: both fit): the action space
    (shape, dtype, bounds) first, then the observation space, each as the env itself defines it."""
    for kind in ("action", "observation"):
        have, want = getattr(source, f"{kind}_space"), getattr(target, f"{kind}_space")
        if not spaces_match(describe_space(have), want, bounds=kind == "action"):
            return f"the target's {kind} space {short(want)} does not match the source's {short(have)}"
    return None
