"""Linear probe: how much of the true state do a frozen backbone's features carry?

Before spending RL compute on a pixel task, check that the frozen features can see what the policy needs.
Frames come from a pixel env (randomized visuals) driven by random actions; the probe is a ridge regression
from the features of the stacked frames to the simulator's state (qpos, qvel), fit on one part of the
episodes and scored (R^2 per state dimension) on the rest. Compared side by side: ImageNet vs random-init
weights, tap layers, and global average pooling vs a small spatial grid.

Usage:
    python benchmarks/probe_features.py [--env simreal/InvertedPendulum-Pixels-Rand-v0] [--frames 3000]
"""

from __future__ import annotations

import argparse
import itertools

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces

import envs  # noqa: F401  (registers the simreal ids)
from agents.extractors import BackboneExtractor


def collect(env_id: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random-action frames: observations (N, H, W, 3k) uint8, states (N, D), episode index (N,)."""
    env = gym.make(env_id)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    data = env.unwrapped.data  # type: ignore[attr-defined]
    images, states, episodes, episode = [], [], [], 0
    while len(images) < n:
        images.append(obs)
        states.append(np.concatenate([data.qpos, data.qvel]))
        episodes.append(episode)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample() * 0.5)
        if terminated or truncated:
            obs, _ = env.reset()
            episode += 1
    env.close()
    return np.stack(images), np.stack(states), np.array(episodes)


def features(images: np.ndarray, weights: str | None, tap: str, grid: int) -> np.ndarray:
    space = spaces.Box(0, 255, images.shape[1:], np.uint8)
    torch.manual_seed(0)
    extractor = BackboneExtractor(space, "efficientnet_lite0", weights, tap=tap).eval()
    out = []
    with torch.no_grad():
        for chunk in np.array_split(images, max(1, len(images) // 128)):
            x = extractor.preprocess(torch.as_tensor(chunk))
            maps = extractor.backbone.forward_to(x, extractor.tap)
            pooled = F.adaptive_avg_pool2d(maps, grid).flatten(1)
            out.append(pooled.reshape(len(chunk), -1).numpy())
    return np.concatenate(out)


def ridge_r2(x: np.ndarray, y: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Per-dimension test R^2 of a ridge fit, alpha picked on a held-out quarter of the training set."""
    mu, sd = x[train].mean(0), x[train].std(0) + 1e-6
    x = (x - mu) / sd
    ym = y[train].mean(0)
    idx = np.flatnonzero(train)
    fit, val = idx[: 3 * len(idx) // 4], idx[3 * len(idx) // 4 :]
    test = ~train

    def solve(rows: np.ndarray, alpha: float) -> np.ndarray:
        a = x[rows]
        return np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ (y[rows] - ym))

    def r2(rows: np.ndarray, w: np.ndarray) -> np.ndarray:
        resid = ((y[rows] - ym - x[rows] @ w) ** 2).mean(0)
        return 1 - resid / y[rows].var(0)

    best = max((10.0**k for k in range(-1, 5)), key=lambda a: r2(val, solve(fit, a)).mean())
    return r2(test, solve(idx, best))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="simreal/InvertedPendulum-Pixels-Rand-v0")
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--taps", default="stage3,stage5,head")
    parser.add_argument("--grids", default="1,4")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    images, states, episodes = collect(args.env, args.frames, args.seed)
    train = episodes < np.quantile(episodes, 0.7)
    names = [f"qpos{i}" for i in range((states.shape[1]) // 2)] + [
        f"qvel{i}" for i in range(states.shape[1] // 2)
    ]
    print(f"{args.env}: {len(images)} frames, {episodes.max() + 1} episodes, {train.sum()} train")
    print("| weights | tap | grid | features | " + " | ".join(f"R^2 {n}" for n in names) + " |")
    print("|---|---|---|---|" + "---|" * len(names))
    for weights, tap, grid in itertools.product(
        ["imagenet", None], args.taps.split(","), [int(g) for g in args.grids.split(",")]
    ):
        feats = features(images, weights, tap, grid)
        if feats.shape[1] > 6000:
            continue
        scores = ridge_r2(feats, states, train)
        cells = " | ".join(f"{s:.2f}" for s in scores)
        print(f"| {weights or 'random'} | {tap} | {grid} | {feats.shape[1]} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
