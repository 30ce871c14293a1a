"""Run an exported simreal policy with onnxruntime and numpy only: no torch, no simreal.

What a deployer's loop needs: the ONNX file (normalization is inside the graph, so feed raw
observations) and the JSON beside it (``policy.onnx.json``), which says how long the observation is
and, with ``action_history: k``, that the last k actions must be appended to the env's observation.

A distilled student's graph takes a second input, ``history``: the last k (observation, action) pairs,
oldest first (the sidecar's ``input.history.fill`` says how to keep it; `HistoryWindow` below does it).
Without ``--window`` it holds the state at reset: every slot the current observation and the neutral
action.

Usage:
    python benchmarks/run_exported.py runs/quickstart/finetune/seed0/policy.onnx --obs 0 0.01 0 0
    python benchmarks/run_exported.py policy.onnx --obs ... --history 0.5 -0.2   # k = 2 past actions
    python benchmarks/run_exported.py runs/x/student/seed0/policy.onnx --obs ... --window ...  # k x (obs, a)

Prints one JSON line: {"action": [...], "obs_dim": n, "latency_ms": t}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort


def describe(model: Path) -> dict[str, Any]:
    """The JSON written beside the export, or {} if there is none."""
    side = model.with_name(model.name + ".json")
    return json.loads(side.read_text()) if side.is_file() else {}


def observation(env_obs: list[float], history: list[float], info: dict[str, Any]) -> np.ndarray:
    """The policy's input: the env's observation, then the past actions (oldest first) if it expects them."""
    obs_cfg = info.get("observation", {})
    k = int(obs_cfg.get("action_history", 0))
    past = history
    if k and not history:
        past = list(obs_cfg.get("neutral_action", [])) * k  # the state before the first action
    return np.asarray([*env_obs, *past], dtype=np.float32)[None, :]


class HistoryWindow:
    """A student's history input, kept the way the sidecar says: at reset every slot is (the reset
    observation, the neutral action); after each step the oldest slot goes and (the observation the
    action was chosen on, the action sent) is appended."""

    def __init__(self, fill: dict[str, Any]) -> None:
        self.steps = int(fill["history_steps"])
        self.neutral = np.asarray(fill["neutral_action"], dtype=np.float32)
        per = fill["per_step"]
        self.window = np.zeros((self.steps, per["observation"] + per["action"]), dtype=np.float32)

    def reset(self, obs: np.ndarray) -> np.ndarray:
        self.window[:] = np.concatenate([np.ravel(obs), self.neutral])
        return self.window[None]

    def push(self, acted_on: np.ndarray, action: np.ndarray) -> np.ndarray:
        self.window[:-1] = self.window[1:]
        self.window[-1] = np.concatenate([np.ravel(acted_on), np.ravel(action)])
        return self.window[None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="an exported policy.onnx")
    parser.add_argument("--obs", type=float, nargs="+", required=True, help="the env's observation vector")
    parser.add_argument("--history", type=float, nargs="*", default=[], help="last k actions, oldest first")
    parser.add_argument(
        "--window", type=float, nargs="*", default=[], help="a student's last k (obs, action) pairs, flat"
    )
    args = parser.parse_args(argv)

    info = describe(args.model)
    obs = observation(args.obs, args.history, info)
    session = ort.InferenceSession(str(args.model), providers=["CPUExecutionProvider"])
    feeds = {"obs": obs}
    window_input = info.get("input", {}).get("history")
    if window_input is not None:
        window = HistoryWindow(window_input["fill"])
        if args.window:
            feeds["history"] = np.asarray(args.window, dtype=np.float32).reshape(1, window.steps, -1)
        else:
            feeds["history"] = window.reset(obs)
    expected = session.get_inputs()[0].shape[1]
    if isinstance(expected, int) and obs.shape[1] != expected:
        print(
            f"run_exported: error: the policy takes {expected} values, got {obs.shape[1]} "
            f"(observation config: {info.get('observation', {})})",
            file=sys.stderr,
        )
        return 2
    start = time.perf_counter()
    (action,) = session.run(["action"], feeds)
    latency_ms = 1000.0 * (time.perf_counter() - start)
    print(json.dumps({"action": action[0].tolist(), "obs_dim": obs.shape[1], "latency_ms": latency_ms}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
