"""Collection speed from pixels with stacked frames: each frame encoded once vs every frame every step.

Usage: python benchmarks/bench_frame_reuse.py [--env simreal/InvertedPendulum-Pixels-Rand-v0]
       [--n-envs 4] [--steps 200] [--rounds 3] [--tap stage3] [--pool 4]

`VecFrozenFeatures` reuses the features of the frames a stacked observation shares with the previous one
(and encodes a reset observation's repeated frame once). This times env steps/s of the same vec env,
same seed and random actions, with that reuse on and off, in interleaved rounds, and checks that both
produce the same features. Rendering and physics are included: it is the rate PPO/SAC collect at.
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.vec_env import DummyVecEnv

import simreal  # noqa: F401 - registers the simreal/ ids
from simreal.training.engine.features import VecFrozenFeatures, cache_frozen_features


def collect(venv: VecFrozenFeatures, steps: int, reuse: bool, seed: int) -> tuple[float, np.ndarray]:
    venv._reuse = reuse  # the switch under test
    venv.invalidate()
    venv.seed(seed)
    rng = np.random.default_rng(seed)
    low, high = venv.action_space.low, venv.action_space.high  # type: ignore[attr-defined]
    features = [venv.reset()]
    t0 = time.perf_counter()
    for _ in range(steps):
        obs, *_ = venv.step(rng.uniform(low, high, (venv.num_envs, *low.shape)).astype(np.float32))
        features.append(obs)
    return venv.num_envs * steps / (time.perf_counter() - t0), np.stack(features)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="simreal/InvertedPendulum-Pixels-Rand-v0")
    parser.add_argument("--n-envs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tap", default="stage3")
    parser.add_argument("--pool", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    venv = DummyVecEnv([lambda: gym.make(args.env)] * args.n_envs)
    spec = {"backbone": "efficientnet_lite0", "weights": "imagenet", "tap": args.tap, "pool": args.pool}
    cached, _ = cache_frozen_features(venv, "cpu", **spec)
    rates: dict[bool, list[float]] = {True: [], False: []}
    gap = 0.0
    for r in range(args.rounds):
        rate_on, on = collect(cached, args.steps, True, r)
        rate_off, off = collect(cached, args.steps, False, r)
        rates[True].append(rate_on)
        rates[False].append(rate_off)
        gap = max(gap, float(np.abs(on - off).max()))
    on_rate, off_rate = statistics.median(rates[True]), statistics.median(rates[False])
    print(f"{args.env}, {args.n_envs} envs, EfficientNet-Lite0 to {args.tap}, grid {args.pool}, 1 thread")
    print("| frames encoded | env steps/s | speed-up |")
    print("|---|---|---|")
    print(f"| every frame of every observation | {off_rate:.0f} | 1.00 |")
    print(f"| each new frame once | {on_rate:.0f} | {on_rate / off_rate:.2f} |")
    print(f"largest feature difference between the two: {gap:.1e}")


if __name__ == "__main__":
    main()
