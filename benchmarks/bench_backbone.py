"""Frozen-backbone cost: forward throughput, and one PPO update cycle cached vs uncached vs trainable.

Usage: python benchmarks/bench_backbone.py [--device cpu|cuda] [--image-size 64]
       [--backbone efficientnet_lite0] [--n-steps 256] [--n-envs 2] [--n-epochs 4] [--threads 1]
       [--json out.json]

(a) Backbone forward images/s at batch 1, 32, 256: the frozen part as ``VecFrozenFeatures`` runs it
    (uint8 in, inference mode, channels_last, autocast on CUDA); median of a few timed calls after warmup.
(b) One PPO update cycle = collect ``n_steps x n_envs`` on a fake image env + ``train()`` (``n_epochs``,
    minibatches of ``batch_size``), for three policies built on the same spec:
    ``cached`` (VecFrozenFeatures + CachedFeaturesHead: the backbone sees each frame once),
    ``uncached`` (frozen BackboneExtractor in the policy: it runs again on every minibatch of every epoch),
    ``trainable`` (the whole backbone trains). Collect and train are timed apart with a callback; each
    setup first runs one untimed warm-up cycle.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.extractors import BackboneExtractor
from simreal.training.engine.device import resolve_device
from simreal.training.engine.features import VecFrozenFeatures, cache_frozen_features, split_extractor

BATCH_SIZES = (1, 32, 256)
SETUPS = ("cached", "uncached", "trainable")
WEIGHTS = {"efficientnet_lite0": "imagenet"}  # the others need a local file; the benchmark uses None


class FakeImageEnv(gym.Env[np.ndarray, np.ndarray]):
    """Random uint8 HWC frames from a pool drawn at construction (a step costs a copy), 2-d actions.

    Episodes are truncated after ``episode_steps`` so ``terminal_observation`` shows up in infos.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, image_size: int = 64, episode_steps: int = 100, pool: int = 64, seed: int = 0):
        self.observation_space = spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.episode_steps = episode_steps
        shape = (pool, image_size, image_size, 3)
        self._frames = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
        self._t = 0

    def _frame(self) -> np.ndarray:
        return self._frames[int(self.np_random.integers(len(self._frames)))].copy()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._t = 0
        return self._frame(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._t += 1
        return self._frame(), float(np.tanh(action).sum()), False, self._t >= self.episode_steps, {}


def fake_vec_env(n_envs: int, image_size: int) -> DummyVecEnv:
    """``n_envs`` FakeImageEnvs, each with its own frame pool."""
    return DummyVecEnv([functools.partial(FakeImageEnv, image_size, seed=i) for i in range(n_envs)])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_forward(spec: dict[str, Any], image_size: int, device: torch.device, repeats: int) -> list[dict]:
    """Images/s of the frozen part at each batch size (median of ``repeats`` timed calls)."""
    venv = fake_vec_env(1, image_size)
    frozen, _ = split_extractor(venv.observation_space, **spec)
    wrapper = VecFrozenFeatures(venv, frozen, device)
    rows = []
    for batch in BATCH_SIZES:
        images = np.random.default_rng(batch).integers(0, 256, (batch, image_size, image_size, 3), np.uint8)
        wrapper.encode(images)  # warm-up (allocator, cuDNN autotune)
        times = []
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            wrapper.encode(images)
            _sync(device)
            times.append(time.perf_counter() - start)
        rows.append({"batch": batch, "images_per_s": batch / statistics.median(times)})
    wrapper.close()
    return rows


class _PhaseTimer(BaseCallback):
    """Seconds spent collecting (rollout start -> end) and training (rollout end -> training end)."""

    def __init__(self, device: torch.device):
        super().__init__()
        self.device = device
        self.marks: dict[str, float] = {}

    def _mark(self, name: str) -> None:
        _sync(self.device)
        self.marks[name] = time.perf_counter()

    def _on_rollout_start(self) -> None:
        self._mark("rollout_start")

    def _on_rollout_end(self) -> None:
        self._mark("rollout_end")

    def _on_training_end(self) -> None:
        self._mark("training_end")

    def _on_step(self) -> bool:
        return True


def build_model(setup: str, spec: dict[str, Any], args: argparse.Namespace, device: torch.device) -> PPO:
    """A PPO on the fake image env for one of ``SETUPS``, all from the same extractor spec."""
    venv = fake_vec_env(args.n_envs, args.image_size)
    ppo: dict[str, Any] = {
        "n_steps": args.n_steps,
        "batch_size": args.batch_size,
        "n_epochs": args.n_epochs,
        "device": device,
        "seed": 0,
    }
    if setup == "cached":
        wrapped, policy_kwargs = cache_frozen_features(venv, device, **spec)
        return PPO("MlpPolicy", wrapped, policy_kwargs=policy_kwargs, **ppo)
    extractor_kwargs = {**spec, "frozen": setup == "uncached"}
    policy_kwargs = {
        "features_extractor_class": BackboneExtractor,
        "features_extractor_kwargs": extractor_kwargs,
    }
    return PPO("CnnPolicy", venv, policy_kwargs=policy_kwargs, **ppo)


def time_cycle(model: PPO, device: torch.device) -> dict[str, float]:
    """Collect + train once, untimed (warm-up), then once timed; seconds per phase."""
    steps = model.n_envs * model.n_steps
    model.learn(total_timesteps=steps)
    timer = _PhaseTimer(device)
    model.learn(total_timesteps=steps, callback=timer, reset_num_timesteps=False)
    collect = timer.marks["rollout_end"] - timer.marks["rollout_start"]
    train = timer.marks["training_end"] - timer.marks["rollout_end"]
    return {"collect_s": collect, "train_s": train, "cycle_s": collect + train}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--weights", help="'imagenet' or a local file (default: imagenet for EfficientNet)")
    parser.add_argument("--n-steps", type=int, default=256)
    parser.add_argument("--n-envs", type=int, default=2)
    parser.add_argument("--n-epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5, help="timed forward calls per batch size")
    parser.add_argument("--setups", default=",".join(SETUPS), help="comma-separated subset of " + str(SETUPS))
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a shared box, more threads than free cores makes OpenMP "
        "spin and times 10x noisier); 0 keeps torch's default",
    )
    parser.add_argument("--json", help="write results here")
    args = parser.parse_args()

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    weights = args.weights or WEIGHTS.get(args.backbone)
    if weights is None:
        parser.error(f"--weights is required for {args.backbone} (cached features need rebuildable weights)")
    spec = {"backbone": args.backbone, "weights": weights, "features_dim": 256}
    setups = [s for s in args.setups.split(",") if s]
    if unknown := set(setups) - set(SETUPS):
        parser.error(f"unknown setups {sorted(unknown)}; allowed: {SETUPS}")

    forward = bench_forward(spec, args.image_size, device, args.repeats)
    cycles = {setup: time_cycle(build_model(setup, spec, args, device), device) for setup in setups}

    samples = args.n_steps * args.n_envs
    print(
        f"\n{args.backbone} ({weights}) on {device}, {args.image_size}x{args.image_size} frames, "
        f"torch threads {torch.get_num_threads()}\n"
    )
    print("| batch | images/s |\n|---|---|")
    for row in forward:
        print(f"| {row['batch']} | {row['images_per_s']:.0f} |")
    print(
        f"\nOne PPO cycle: {args.n_steps} steps x {args.n_envs} envs, {args.n_epochs} epochs, "
        f"minibatch {args.batch_size} ({samples * args.n_epochs} samples through train())\n"
    )
    print("| setup | collect s | train s | cycle s | cycle vs cached | train vs cached |")
    print("|---|---|---|---|---|---|")
    base = cycles.get("cached")
    for setup, t in cycles.items():
        ratios = (
            (f"{t['cycle_s'] / base['cycle_s']:.1f}x", f"{t['train_s'] / base['train_s']:.1f}x")
            if base
            else ("-", "-")
        )
        print(
            f"| {setup} | {t['collect_s']:.2f} | {t['train_s']:.2f} | {t['cycle_s']:.2f} | "
            f"{ratios[0]} | {ratios[1]} |"
        )
    result = {"device": str(device), "spec": spec, "args": vars(args), "forward": forward}
    result["ppo_cycle"] = cycles
    if base and "uncached" in cycles:
        result["uncached_over_cached"] = {
            "cycle": cycles["uncached"]["cycle_s"] / base["cycle_s"],
            "train": cycles["uncached"]["train_s"] / base["train_s"],
        }
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
