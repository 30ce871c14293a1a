"""Evaluation speed of a pixel policy: one env encoding every frame of every stack vs envs side by side.

Usage: python benchmarks/bench_pixel_eval.py [--policy PATH] [--episodes 8] [--n-envs 4] [--rounds 2]

The policy (default: a freshly initialized pixel policy of `configs/inverted_pendulum_pixels.yaml`,
built without training: speed does not depend on the weights) is evaluated on the randomized pixel
source, with the same episode seeds, three ways, interleaved per round:

- `before`: the loop evaluation used before batching - one env, each step's 3 stacked frames all
  encoded again at batch 1 (what `Encoder.encode` does for one observation);
- `one env`: `evaluate(n_envs=1)` - one env, each new frame encoded once (the others reused);
- `side by side`: `evaluate(n_envs=N)` - N envs, one backbone batch of their new frames per step.

Prints env steps/s of each (median over rounds) and checks that all three give the same returns.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def untrained_policy(out: Path) -> Path:
    """A pixel policy artifact of the shipped pixel config, saved before any training step."""
    from simreal.cli import main

    args = ["pretrain", str(ROOT / "configs/inverted_pendulum_pixels.yaml"), "--seeds", "0", "--no-progress"]
    args += ["--device", "cpu", "--set", f"output_dir={out}", "--set", "pretrain.timesteps=1"]
    if main(args) != 0:
        raise SystemExit("could not build the pixel policy")
    return next(out.rglob("policy.pt"))


class _OneAtATime:
    """The encoding the evaluation loop used before: each observation alone, every frame encoded."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder

    def batch(self) -> Any:
        return lambda observations, previous: np.stack([self.encoder.encode(o) for o in observations])


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--policy", type=Path)
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--n-envs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from simreal.training.engine.evaluation import evaluate
    from simreal.training.engine.sb3.loading import load_for_env

    with tempfile.TemporaryDirectory() as tmp:
        policy = args.policy or untrained_policy(Path(tmp))
        env_id = "simreal/InvertedPendulum-Pixels-Rand-v0"
        loaded = load_for_env(policy, lambda: gym.make(env_id), torch.device("cpu"), 0)
        ways = {
            "before": (_OneAtATime(loaded.encoder), 1),
            "one env": (loaded.encoder, 1),
            f"side by side ({args.n_envs} envs)": (loaded.encoder, args.n_envs),
        }
        rates: dict[str, list[float]] = {name: [] for name in ways}
        returns: dict[str, np.ndarray] = {}
        for _ in range(args.rounds):
            for name, (encoder, n_envs) in ways.items():
                start = time.perf_counter()
                result = evaluate(
                    loaded.model, loaded.make_env, args.episodes, 0, loaded.obs_rms, encoder, n_envs
                )
                rates[name].append(float(result.lengths.sum()) / (time.perf_counter() - start))
                returns[name] = result.returns
    base = statistics.median(rates["before"])
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"{name:28s} {rate:8.1f} env steps/s  x{rate / base:.2f}  rounds {[round(v) for v in values]}")
    same = all(np.allclose(r, returns["before"], rtol=1e-6) for r in returns.values())
    print(f"episodes {args.episodes}, mean return {returns['before'].mean():.1f}; same returns: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
