"""`sim_backend: warp` vs Gymnasium envs: PPO pretraining throughput side by side; learning at equal steps.

Throughput (default): PPO on a task's randomized source sim (collect + update, env steps per second of
wall time, kernels compiled beforehand) with Gymnasium `DummyVecEnv` (1 and 8 envs), `SubprocVecEnv` (8)
and MuJoCo Warp (64, 256, 1,024, 4,096 worlds; and 1,024 without randomization, the cost of per-world
physics and effects). One PPO setting for all: rollouts of `n_steps` per env so that each holds at least
2,048 steps (16 per world at most), 4 minibatches, 5 epochs, 64x64 network - the per-sample update cost
is the same and the difference is where the envs step. Settings run interleaved, `--repeats` rounds.

Randomization cost (`--randomization-cost`): env steps/s of 1,024 worlds with per-world physics and
effects vs none, uniformly random actions (short episodes: the most resets, the worst case), `--rounds`
interleaved rounds of `--seconds` each; the median of the per-round ratios.

Learning (`--learn`): the same PPO on `--n-envs` Gymnasium envs and on as many Warp worlds, `--steps`
each, `--seeds`; every final policy evaluated on the same Gymnasium randomized env (the Warp-trained
ones too: what the pipeline's target stages would see), 10 episodes on fixed seeds.

Usage:
    python benchmarks/bench_warp.py --task inverted_pendulum --repeats 2
    python benchmarks/bench_warp.py --task half_cheetah --repeats 1
    python benchmarks/bench_warp.py --randomization-cost --task inverted_pendulum
    python benchmarks/bench_warp.py --learn --task inverted_pendulum --n-envs 256 --steps 400000 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecEnv

import simreal  # noqa: F401 - registers the packaged tasks
from simreal.simulation.batched import make_batched
from simreal.simulation.registry import PACKAGED, Task
from simreal.training.engine.loop import make_vec

CPU = torch.device("cpu")
SETTINGS = [
    "dummy:1",
    "dummy:8",
    "subproc:8",
    "warp:64",
    "warp:256",
    "warp:1024",
    "warp-nominal:1024",
    "warp:4096",
]


def build(task: Task, setting: str, seed: int) -> VecEnv:
    kind, n = setting.split(":")
    if kind.startswith("warp"):
        venv = make_batched(task, kind == "warp", int(n), seed, CPU)
        venv.reset()
        venv.step(np.zeros((int(n), *venv.action_space.shape), dtype=np.float32))  # compile / load kernels
        return venv
    register = task.spec if kind == "subproc" else None
    return make_vec(task.randomized_id, int(n), seed, False, None, register=register)


def ppo(venv: VecEnv, seed: int, epochs: int = 5) -> PPO:
    n_steps = max(16, 2048 // venv.num_envs) if venv.num_envs <= 128 else 16
    rollout = n_steps * venv.num_envs
    return PPO(
        "MlpPolicy",
        venv,
        n_steps=n_steps,
        batch_size=rollout // 4,
        n_epochs=epochs,
        policy_kwargs={"net_arch": [64, 64]},
        seed=seed,
        device=CPU,
        verbose=0,
    )


def throughput(task: Task, setting: str, steps: int) -> float:
    venv = build(task, setting, 0)
    model = ppo(venv, 0)
    total = max(steps, 2 * model.n_steps * venv.num_envs)
    start = time.perf_counter()
    model.learn(total)
    rate = model.num_timesteps / (time.perf_counter() - start)
    venv.close()
    return rate


def randomization_cost(task: Task, nworld: int, rounds: int, seconds: float) -> list[float]:
    """Per-round ratios (randomized / nominal env steps per second), rounds interleaved."""
    envs = {kind: build(task, f"{kind}:{nworld}", 0) for kind in ("warp", "warp-nominal")}
    rng = np.random.default_rng(0)
    shape = (nworld, *envs["warp"].action_space.shape)
    ratios = []
    for _ in range(rounds):
        rate = {}
        for kind, venv in envs.items():
            start, steps = time.perf_counter(), 0
            while time.perf_counter() - start < seconds:
                venv.step(rng.uniform(-1, 1, shape).astype(np.float32))
                steps += nworld
            rate[kind] = steps / (time.perf_counter() - start)
        ratios.append(rate["warp"] / rate["warp-nominal"])
        print(f"  randomized {rate['warp']:,.0f} vs nominal {rate['warp-nominal']:,.0f} steps/s", flush=True)
    return ratios


def evaluate(model: PPO, task: Task, episodes: int = 10) -> float:
    env = gym.make(task.randomized_id)
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=10_000 + i)
        done, total = False, 0.0
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def learn(task: Task, n_envs: int, steps: int, seeds: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("dummy", "warp"):
        finals, walls = [], []
        for seed in seeds:
            venv = build(task, f"{kind}:{n_envs}", seed)
            model = ppo(venv, seed, epochs=10)
            start = time.perf_counter()
            model.learn(steps)
            walls.append(time.perf_counter() - start)
            finals.append(evaluate(model, task))
            venv.close()
            print(f"  {kind} seed {seed}: final {finals[-1]:.1f} in {walls[-1]:.0f} s", flush=True)
        out[kind] = {"final": finals, "mean": float(np.mean(finals)), "wall_s": walls}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="inverted_pendulum")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--steps", type=int, default=40_960)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--learn", action="store_true")
    parser.add_argument("--n-envs", type=int, default=256)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--randomization-cost", action="store_true")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the pipeline's stages (torch_threads: 1)
    task = PACKAGED[args.task]
    if args.randomization_cost:
        ratios = randomization_cost(task, 1024, args.rounds, args.seconds)
        print(
            f"{args.task}: randomized / nominal throughput, median of {len(ratios)} rounds: "
            f"{statistics.median(ratios):.3f}"
        )
        return
    if args.learn:
        seeds = [int(s) for s in args.seeds.split(",")]
        result = learn(task, args.n_envs, args.steps, seeds)
        print(json.dumps({"task": args.task, "n_envs": args.n_envs, "steps": args.steps, **result}))
        return
    settings = args.settings.split(",")
    rates: dict[str, list[float]] = {s: [] for s in settings}
    run: Callable[[str], float] = lambda s: throughput(task, s, args.steps)  # noqa: E731
    for _ in range(args.repeats):
        for s in settings:
            rates[s].append(run(s))
            print(f"  {s}: {rates[s][-1]:,.0f} steps/s", flush=True)
    best_gym = max(statistics.median(v) for s, v in rates.items() if not s.startswith("warp"))
    print(f"{args.task}: median env steps/s (collect + PPO update), ratio to the best Gymnasium setting")
    for s, v in rates.items():
        print(f"| {s} | {statistics.median(v):,.0f} | {statistics.median(v) / best_gym:.2f}x |")


if __name__ == "__main__":
    main()
