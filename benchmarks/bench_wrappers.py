"""Per-step cost of randomization and real-like wrappers over the raw env, measured in one run.

Usage: python benchmarks/bench_wrappers.py [--steps 20000] [--repeats 5] [--json out.json]

The wrapped env is `RandomizeDynamics` over the task's randomized parameters + the target's real-like
effects (action delay, sensor noise), on the nominal env. Wrappers change the trajectory (a delayed
action moves the arm differently), and the simulator's work per step depends on the trajectory, so
comparing two separate step loops would measure physics, not wrappers. Instead a timer sits between
the wrappers and the nominal env: overhead = (time in the wrapped `step` - time in the nominal env's
`step` below it) / time in the nominal env's `step`, within the same loop. Only `step` is timed:
resets (and their parameter resampling) are excluded. The registered randomized and target ids are
also timed against the raw env in interleaved rounds, for reference: their ratio includes other
physics (heavier bodies, another frame_skip), which is not wrapper cost.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import gymnasium as gym
import numpy as np

from simreal.simulation.effects import apply_effects
from simreal.simulation.randomization import ParamSpec, RandomizationSpec, RandomizeDynamics
from simreal.simulation.registry import PACKAGED
from simreal.simulation.tasks import load_task

TASKS = {"HalfCheetah": ("half_cheetah", "shifted"), "KukaReach": ("kuka_reach", "shifted")}


class _InnerTimer(gym.Wrapper[Any, Any, Any, Any]):
    """Accumulates the seconds spent in the env below it."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        self.spent = 0.0

    def step(self, action: Any) -> Any:
        t0 = time.perf_counter()
        out = self.env.step(action)
        self.spent += time.perf_counter() - t0
        return out


def _time_steps(env: gym.Env[Any, Any], actions: np.ndarray) -> float:
    """Seconds spent in `step` for all `actions`; resets are not timed."""
    env.reset(seed=0)
    total = 0.0
    for action in actions:
        t0 = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(action)
        total += time.perf_counter() - t0
        if terminated or truncated:
            env.reset()
    return total


def bench(name: str, steps: int, repeats: int) -> dict[str, Any]:
    key, target = TASKS[name]
    task = PACKAGED[key]
    ids = {"raw": task.nominal_id, "randomized_id": task.randomized_id, "target_id": task.target_id(target)}
    made = {k: gym.make(v) for k, v in ids.items()}
    spec = load_task(key)
    pinned = tuple(
        ParamSpec(param=p.param, names=p.names, value=1.0 if p.mode == "scale" else 0.0, mode=p.mode)
        for p in spec.randomization.params
        if p.mode != "abs"
    )
    timer = _InnerTimer(gym.make(task.nominal_id))
    wrapped = apply_effects(
        RandomizeDynamics(timer, RandomizationSpec(params=pinned)), spec.targets[target].effects
    )
    rng = np.random.default_rng(0)
    space = made["raw"].action_space
    actions = rng.uniform(space.low, space.high, size=(steps, *space.shape)).astype(space.dtype)
    times: dict[str, list[float]] = {k: [] for k in made}
    overheads: list[float] = []
    for _ in range(repeats):
        for k, env in made.items():
            times[k].append(_time_steps(env, actions))
        timer.spent = 0.0
        total = _time_steps(wrapped, actions)
        overheads.append(total / timer.spent - 1.0)
    result: dict[str, Any] = {"task": name, "steps": steps, "repeats": repeats, "ids": ids}
    for k in made:
        result[f"{k}_steps_per_s"] = steps / statistics.median(times[k])
    result["wrapped_steps_per_s"] = (
        steps / statistics.median(times["raw"]) / (1 + statistics.median(overheads))
    )
    result["wrapped_overhead"] = statistics.median(overheads)
    for k in ("randomized_id", "target_id"):
        ratios = [w / r for w, r in zip(times[k], times["raw"], strict=True)]
        result[f"{k}_overhead"] = statistics.median(ratios) - 1.0
    for env in made.values():
        env.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="write results here")
    args = parser.parse_args()
    rows = [bench(name, args.steps, args.repeats) for name in TASKS]
    print("| task | raw steps/s | wrapper overhead per step | randomized id (vs raw) | target id (vs raw) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['task']} | {r['raw_steps_per_s']:.0f} | "
            f"{r['wrapped_overhead']:+.1%} | {r['randomized_id_steps_per_s']:.0f} "
            f"({r['randomized_id_overhead']:+.1%}) | {r['target_id_steps_per_s']:.0f} "
            f"({r['target_id_overhead']:+.1%}) |"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
