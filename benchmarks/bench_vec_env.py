"""`algo.vec_env: subproc` vs `dummy`: pretraining env steps per second, side by side in one run.

Pretrains the quickstart's randomized pendulum (PPO, `--n-envs` envs, `--steps` steps) with each vec env
kind in turn, `--repeats` interleaved rounds, and prints the median wall time of each and their ratio.
On few cores and cheap envs the processes' IPC can cost more than the parallel stepping saves; the
subprocess kind pays off with expensive envs (contacts, rendering) and more cores.

Usage:
    python benchmarks/bench_vec_env.py --n-envs 2 --steps 20480 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from simreal.cli import main as simreal_main

ROOT = Path(__file__).resolve().parents[1]


def _pretrain(kind: str, n_envs: int, steps: int, out: Path) -> float:
    args = ["pretrain", str(ROOT / "configs" / "quickstart.yaml"), "--no-progress", "--seeds", "0"]
    args += ["--workers", "1", "--device", "cpu"]
    for item in (
        f"output_dir={out}",
        f"experiment={kind}",
        f"algo.n_envs={n_envs}",
        f"algo.vec_env={kind}",
        f"pretrain.timesteps={steps}",
        "pretrain.nominal_baseline=false",
        "reference=false",
    ):
        args += ["--set", item]
    started = time.perf_counter()
    if simreal_main(args) != 0:
        raise SystemExit(f"bench_vec_env: {kind} failed")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-envs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20480)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"dummy": [], "subproc": []}
    for _ in range(args.repeats):
        for kind in times:
            with tempfile.TemporaryDirectory() as out:
                times[kind].append(_pretrain(kind, args.n_envs, args.steps, Path(out)))
    dummy, subproc = (statistics.median(times[k]) for k in ("dummy", "subproc"))
    print(f"n_envs {args.n_envs}, {args.steps:,} PPO steps, median of {args.repeats} interleaved rounds:")
    print(f"  dummy   {dummy:6.1f} s  ({args.steps / dummy:,.0f} steps/s)")
    print(f"  subproc {subproc:6.1f} s  ({args.steps / subproc:,.0f} steps/s)")
    print(f"  subproc / dummy speed: {dummy / subproc:.2f}x")


if __name__ == "__main__":
    main()
