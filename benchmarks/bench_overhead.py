"""Training throughput of the framework's stage runner against a plain stable-baselines3 script.

Usage: python benchmarks/bench_overhead.py [--algo PPO] [--steps 8192] [--repeats 3] [--json out.json]

Same env (InvertedPendulum-v5 physics: Gymnasium's id for the plain script, `simreal/InvertedPendulum-v0`
for the framework), same algorithm, network, seed and step budget, in interleaved rounds. The framework
run includes what a pretraining stage does: the stage callback, the TensorBoard logger and atomic
checkpoints (every `--checkpoint-every` steps). Evaluation is off on both sides.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import torch

import simreal  # noqa: F401 - registers the simreal/ ids
from agents.algorithms import make_model
from simreal.training.engine.loop import train_stage

KWARGS = {"PPO": {"n_steps": 1024, "batch_size": 64}, "SAC": {"learning_starts": 500, "buffer_size": 20000}}


def plain(algo: str, steps: int) -> float:
    model = make_model(algo, "MlpPolicy", gym.make("InvertedPendulum-v5"), 3e-4, {}, KWARGS[algo], "cpu", 0)
    t0 = time.perf_counter()
    model.learn(steps)
    return steps / (time.perf_counter() - t0)


def framework(algo: str, steps: int, checkpoint_every: int) -> float:
    env = gym.make("simreal/InvertedPendulum-v0")
    model = make_model(algo, "MlpPolicy", env, 3e-4, {}, KWARGS[algo], "cpu", 0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train_stage(model, steps, Path(tmp), None, checkpoint_every, progress_bar=False)
        return steps / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", default="PPO", choices=sorted(KWARGS))
    parser.add_argument("--steps", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checkpoint-every", type=int, default=4096)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rates: dict[str, list[float]] = {"plain": [], "framework": []}
    for _ in range(args.repeats):
        rates["plain"].append(plain(args.algo, args.steps))
        rates["framework"].append(framework(args.algo, args.steps, args.checkpoint_every))
    ratios = [f / p for f, p in zip(rates["framework"], rates["plain"], strict=True)]
    result = {
        "algo": args.algo,
        "steps": args.steps,
        "plain_steps_per_s": statistics.median(rates["plain"]),
        "framework_steps_per_s": statistics.median(rates["framework"]),
        "framework_over_plain": statistics.median(ratios),
    }
    print("| algo | plain SB3 steps/s | framework steps/s | framework / plain |")
    print("|---|---|---|---|")
    print(
        f"| {result['algo']} | {result['plain_steps_per_s']:.0f} | {result['framework_steps_per_s']:.0f} | "
        f"{result['framework_over_plain']:.3f} |"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
