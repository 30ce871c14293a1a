"""Why does the pixel pendulum not learn? Measurements that separate the learning setup from perception.

Part A - the learning setup without pixels: PPO exactly as `configs/inverted_pendulum_pixels.yaml` sets
it up (its n_envs, n_steps, batch, epochs, network and pretraining budget) on the same randomized source
sim, from state observations: the full state (what a perfect perception would give), positions only (no
velocity), and the positions of the last 3 steps (what 3 stacked frames can give at best); the first and
the last also with the last 2 actions (the source delays actions by 0-2 steps, which a camera cannot
see); and the stacked positions as the newest one and their differences (what frame differences give),
raw and divided by the control period (finite-difference velocities).
If the full state does not balance within the budget, the budget or PPO setup is the limit, not
the camera; if positions-only fails but stacked positions work, velocity must reach the policy through
the stack.
Each final policy: 10 episodes on the randomized source, fixed seeds.

Part B - the scale of what the frozen features feed the policy: statistics of the cached EfficientNet-Lite0
features (the config's tap and grid) over random-action frames of the randomized pixel source, and the
spread of the projection's output at SB3's initialization (orthogonal, gain sqrt(2)).

Usage:
    python benchmarks/pixels_diagnosis.py --seeds 0,1,2 [--part a|b|both]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO

sys.path.insert(0, str(Path(__file__).resolve().parent))
from probe_features import collect, features  # noqa: E402

import simreal  # noqa: E402,F401 - registers the packaged tasks
from simreal.config import load_config  # noqa: E402
from simreal.simulation.observation import ActionHistory  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "inverted_pendulum_pixels.yaml"
SOURCE = "simreal/InvertedPendulum-Rand-v0"


VIEWS = (
    "state",
    "positions",
    "stacked_positions",
    "state+action_history",
    "stacked_positions+action_history",
    "differences+action_history",
    "finite_differences+action_history",
)


CONTROL_PERIOD = 0.04
"""Seconds between two observations of the pendulum (timestep 0.02 x frame_skip 2)."""


def _differences(stacked: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """[p_{t-2}, p_{t-1}, p_t] (flattened, 2 each) -> [p_t, p_t - p_{t-1}, p_{t-1} - p_{t-2}] (x scale)."""
    p = stacked.reshape(3, 2)
    return np.concatenate([p[2], scale * (p[2] - p[1]), scale * (p[1] - p[0])]).astype(np.float32)


def _view(kind: str) -> Any:
    def make() -> gym.Env[Any, Any]:
        env: gym.Env[Any, Any] = gym.make(SOURCE)
        base = kind.removesuffix("+action_history")
        if base != "state":
            env = gym.wrappers.TransformObservation(
                env, lambda o: o[:2].astype(np.float32), gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
            )
        if base in ("stacked_positions", "differences", "finite_differences"):
            env = gym.wrappers.FlattenObservation(gym.wrappers.FrameStackObservation(env, 3))
        if base in ("differences", "finite_differences"):  # the newest positions, the stack's differences
            scale = 1.0 / CONTROL_PERIOD if base == "finite_differences" else 1.0  # velocity units
            env = gym.wrappers.TransformObservation(
                env, lambda o: _differences(o, scale), gym.spaces.Box(-np.inf, np.inf, (6,), np.float32)
            )
        if kind.endswith("+action_history"):  # the source delays actions 0-2 steps: the commands in flight
            env = ActionHistory(env, 2)
        return env

    return make


def _evaluate(model: PPO, make: Any, episodes: int = 10) -> float:
    env = make()
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=50_000 + i)
        done, total = False, 0.0
        while not done:
            obs, reward, terminated, truncated, _ = env.step(model.predict(obs, deterministic=True)[0])
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def part_a(seeds: list[int], views: tuple[str, ...] = VIEWS) -> None:
    cfg = load_config(CONFIG)
    algo = cfg.algo
    steps = cfg.pretrain.timesteps
    print(f"Part A: PPO {algo.kwargs}, {algo.n_envs} envs, net {algo.net_arch}, {steps:,} steps, state views")
    from stable_baselines3.common.env_util import make_vec_env

    for kind in views:
        finals = []
        for seed in seeds:
            venv = make_vec_env(_view(kind), n_envs=algo.n_envs, seed=seed)
            model = PPO("MlpPolicy", venv, seed=seed, policy_kwargs=algo.policy_kwargs(), **algo.kwargs)
            model.learn(steps)
            finals.append(_evaluate(model, _view(kind)))
            venv.close()
        print(f"| {kind} | {' | '.join(f'{f:.1f}' for f in finals)} | {np.mean(finals):.1f} |", flush=True)


def part_b(frames: int) -> None:
    cfg = load_config(CONFIG)
    p = cfg.perception
    assert p is not None
    images, _, _ = collect("simreal/InvertedPendulum-Pixels-Rand-v0", frames, 0)
    feats = features(images, p.weights, p.tap or "stage3", p.pool)
    std = feats.std(axis=0)
    print(
        f"Part B: {feats.shape[1]} features ({p.tap}, {p.pool}x{p.pool} grid, {images.shape[-1] // 3} frames)"
    )
    print(f"  |value| mean {np.abs(feats).mean():.3f}, max {np.abs(feats).max():.2f}")
    print(f"  per-feature std: median {np.median(std):.4f}, 90th pct {np.percentile(std, 90):.4f}")
    print(f"  per-feature mean / std, median ratio: {np.median(np.abs(feats.mean(0)) / (std + 1e-8)):.1f}")
    print(f"  share of features with std < 1% of the largest: {(std < 0.01 * std.max()).mean():.2f}")
    torch.manual_seed(0)
    proj = torch.nn.Linear(feats.shape[1], p.extractor_kwargs()["features_dim"])
    torch.nn.init.orthogonal_(proj.weight, gain=np.sqrt(2))
    torch.nn.init.zeros_(proj.bias)
    out = proj(torch.as_tensor(feats)).detach().numpy()
    spread, offset = out.std(0).mean(), np.abs(out.mean(0)).mean()
    print(f"  projection output at init: std across frames {spread:.4f}, |mean| {offset:.4f}")
    centred = (feats - feats.mean(0)) / (std + 1e-8)
    out_n = proj(torch.as_tensor(centred, dtype=torch.float32)).detach().numpy()
    print(f"  same, features standardized: std across frames {out_n.std(0).mean():.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--part", default="both", choices=["a", "b", "both"])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--views", default=",".join(VIEWS), help="part A's observation views")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.part in ("b", "both"):
        part_b(args.frames)
    if args.part in ("a", "both"):
        part_a([int(s) for s in args.seeds.split(",")], tuple(args.views.split(",")))


if __name__ == "__main__":
    main()
