"""Linear probe: how much of the true state do a frozen backbone's features carry?

Before spending RL compute on a pixel task, check that the frozen features can see what the policy needs.
Frames come from the source pixel env (randomized visuals) driven by random actions; the probe is a ridge
regression from the features of the stacked frames to the simulator's state (qpos, qvel), fit on 70% of
the episodes and scored (R^2 per state dimension, 1 = perfect, 0 = no better than the mean) on the other
30%, and on frames of the target env (a fixed visual shift the probe never saw). Compared side by side:
ImageNet vs random-init weights, tap layers, and global average pooling vs a small spatial grid; the
whole measurement is repeated for `--seeds` data seeds (mean and spread over seeds).

Usage:
    python benchmarks/probe_features.py [--frames 2000] [--seeds 0,1,2] [--taps stage3,head] [--grids 1,4]
"""

from __future__ import annotations

import argparse
import itertools

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces

import simreal  # noqa: F401 - registers the simreal/ ids
from agents.backbones import build_backbone
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


def ridge_r2(
    x: np.ndarray, y: np.ndarray, train: np.ndarray, x_shift: np.ndarray, y_shift: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension R^2 of a ridge fit on `train` rows (alpha picked on their last quarter), scored on
    the other rows and on the shifted set."""
    mu, sd = x[train].mean(0), x[train].std(0) + 1e-6
    x, x_shift = (x - mu) / sd, (x_shift - mu) / sd
    ym = y[train].mean(0)
    idx = np.flatnonzero(train)
    fit, val = idx[: 3 * len(idx) // 4], idx[3 * len(idx) // 4 :]
    test = ~train

    def solve(rows: np.ndarray, alpha: float) -> np.ndarray:
        a = x[rows]
        return np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ (y[rows] - ym))

    def r2(xs: np.ndarray, ys: np.ndarray, w: np.ndarray) -> np.ndarray:
        resid = ((ys - ym - xs @ w) ** 2).mean(0)
        return np.asarray(1 - resid / ys.var(0))

    best = max((10.0**k for k in range(-1, 5)), key=lambda a: r2(x[val], y[val], solve(fit, a)).mean())
    w = solve(idx, best)
    return r2(x[test], y[test], w), r2(x_shift, y_shift, w)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="simreal/InvertedPendulum-Pixels-Rand-v0")
    parser.add_argument("--target", default="simreal/InvertedPendulum-Pixels-Target-Camera-v0")
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--taps", default="stage3,head")
    parser.add_argument("--grids", default="1,4")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--max-features", type=int, default=6000, help="skip larger settings")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    settings = [
        (w, tap, grid)
        for w, tap, grid in itertools.product(
            ["imagenet", None], args.taps.split(","), [int(g) for g in args.grids.split(",")]
        )
    ]
    scores: dict[tuple[str | None, str, int], list[tuple[np.ndarray, np.ndarray]]] = {k: [] for k in settings}
    sizes: dict[tuple[str | None, str, int], int] = {}
    names: list[str] = []
    layout = build_backbone("efficientnet_lite0", None)  # channels per tap, for the feature sizes
    for seed in seeds:
        images, states, episodes = collect(args.env, args.frames, seed)
        shifted, shifted_states, _ = collect(args.target, args.frames // 2, seed + 1000)
        train = episodes < np.quantile(episodes, 0.7)
        half = states.shape[1] // 2
        names = [f"qpos{i}" for i in range(half)] + [f"qvel{i}" for i in range(half)]
        for key in settings:
            _, tap, grid = key
            sizes[key] = layout.tap_channels(tap) * grid**2 * images.shape[-1] // 3
            if sizes[key] > args.max_features:  # decided before the (expensive) encoding
                continue
            feats = features(images, *key)
            scores[key].append(ridge_r2(feats, states, train, features(shifted, *key), shifted_states))
    print(f"source {args.env} ({args.frames} frames/seed), shifted target {args.target}, seeds {seeds}")
    print("R^2 of a linear probe, mean ± std over seeds: held-out source episodes / visually shifted target")
    print("| weights | tap | grid | features | " + " | ".join(names) + " |")
    print("|---|---|---|---|" + "---|" * len(names))
    for key, runs in scores.items():
        if not runs:
            continue
        src, tgt = np.stack([r[0] for r in runs]), np.stack([r[1] for r in runs])
        cells = " | ".join(f"{_fmt(src[:, d])} / {_fmt(tgt[:, d])}" for d in range(len(names)))
        weights, tap, grid = key
        print(f"| {weights or 'random'} | {tap} | {grid} | {sizes[key]} | {cells} |", flush=True)


def _fmt(values: np.ndarray) -> str:
    """Mean ± std; anything below -1 (a probe far worse than the mean) is shown as < -1."""
    mean = float(values.mean())
    return "< -1" if mean < -1 else f"{mean:.2f} ± {float(values.std()):.2f}"


if __name__ == "__main__":
    main()
