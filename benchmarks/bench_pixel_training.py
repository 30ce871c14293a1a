"""Pixel training throughput, before and after, side by side: env steps/s of collect + update.

Usage: python benchmarks/bench_pixel_training.py [--steps 4096] [--rounds 2]

Three ways to train the pendulum's camera policy, interleaved per round in one process (the machine's
noise hits all of them alike), each for `--steps` env steps from a fresh model on the randomized pixel
source, one torch thread:

- `before`: PPO as the pixel config shipped before issue 14 (commit 9f62438: 4 envs x 256-step
  rollouts, minibatch 64, 10 epochs; frames stacked as they are, no normalization, no action history);
- `PPO now`: `configs/inverted_pendulum_pixels.yaml` (4 x 512-step rollouts, minibatch 256, 10 epochs
  with target_kl 0.02, frame differences, LayerNorm projection, normalization, action history);
- `DAgger`: the distillation loop of `configs/inverted_pendulum_pixels_distill.yaml` (8 envs, the full
  8x8 map per frame, 32 minibatch steps every 1,024 env steps, the teacher labelling every step); its
  teacher is an untrained state policy (its forward pass costs the same as a trained one's).

Prints env steps/s (median over rounds) and each one's ratio to `before`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
BEFORE = [  # the pixel config's settings at commit 9f62438, over today's config
    "perception.readout=stack",
    "perception.projection=relu",
    "perception.adabn_frames=0",
    "algo.normalize_obs=false",
    "observation.action_history=0",
    "algo.kwargs={n_steps: 256, batch_size: 64, n_epochs: 10}",
]


def ppo(config: str, overrides: list[str], steps: int, out: Path) -> Callable[[], float]:
    from simreal.config import load_config
    from simreal.training.engine.context import Context
    from simreal.training.engine.sb3.loading import build_model
    from simreal.training.engine.stage import policy_env

    def run() -> float:
        cfg = load_config(ROOT / config, [*overrides, f"output_dir={out}"])
        ctx = Context(cfg, out / "ppo", torch.device("cpu"), progress_bar=False)
        venv, encoder = policy_env(ctx, ctx.source_id(True), 0)
        model = build_model(cfg.algo, venv, cfg.algo.pretrain_lr, ctx.device, 0, encoder)
        started = time.perf_counter()
        model.learn(steps)
        wall = time.perf_counter() - started
        venv.close()
        return model.num_timesteps / wall

    return run


def dagger(steps: int, out: Path) -> Callable[[], float]:
    from simreal.config import load_config
    from simreal.training.engine.context import Context
    from simreal.training.methods.distill.stages import distill_student, pretrain_teacher

    config = ROOT / "configs/inverted_pendulum_pixels_distill.yaml"
    cfg = load_config(
        config, [f"output_dir={out}", "distill.teacher.timesteps=2048", f"distill.steps={steps}"]
    )
    cfg = cfg.model_copy(update={"evaluation": cfg.evaluation.model_copy(update={"final_episodes": 1})})
    ctx = Context(cfg, out / "dagger", torch.device("cpu"), progress_bar=False)
    teacher = pretrain_teacher(ctx, 0)
    rounds = iter(range(1000))

    def run() -> float:
        import json

        stage = out / f"student{next(rounds)}"
        distill_student(ctx, teacher, 0, stage)
        summary = json.loads((stage / "distill.json").read_text())
        return summary["steps"] / summary["wall_s"]

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        setups = {
            "before": ppo("configs/inverted_pendulum_pixels.yaml", BEFORE, args.steps, out),
            "PPO now": ppo("configs/inverted_pendulum_pixels.yaml", [], args.steps, out),
            "DAgger": dagger(args.steps, out),
        }
        speeds: dict[str, list[float]] = {name: [] for name in setups}
        for _ in range(args.rounds):
            for name, run in setups.items():
                speeds[name].append(run())
                print(f"  {name}: {speeds[name][-1]:.1f} env steps/s", file=sys.stderr, flush=True)
    base = statistics.median(speeds["before"])
    print(f"| setup | env steps/s (median of {args.rounds}) | vs before |")
    print("|---|---|---|")
    for name, values in speeds.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.1f} | {median / base:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
