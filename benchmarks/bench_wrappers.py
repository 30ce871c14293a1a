"""Per-step cost of randomization and real-like wrappers, raw env vs wrapped env, side by side.

Usage: python benchmarks/bench_wrappers.py [--steps 20000] [--repeats 5] [--json out.json]

For each task the raw nominal env and the wrapped envs (randomized source, real-like target) are
stepped in interleaved rounds (raw, wrapped, raw, wrapped, ...) so machine noise hits both alike.
Only `step` calls are timed: resets (and their parameter resampling) happen outside the timer.
The reported overhead is the median over rounds of (wrapped time / raw time - 1).

"wrapped" = `RandomizeDynamics` over the task's randomized parameters + the target's real-like effects,
stacked on the same nominal env. Its parameters are pinned at their nominal values (scale 1, add 0), so
the physics - and the solver's work per step - is identical and the ratio measures the wrappers alone.
The registered randomized and target ids are timed too, for reference: their overhead also contains
the cost of other physics (heavier bodies, more contacts, another frame_skip), which is not wrapper cost.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import gymnasium as gym
import numpy as np

import envs
from simreal.effects import apply_effects
from simreal.randomization import ParamSpec, RandomizationSpec, RandomizeDynamics
from simreal.tasks import load_task

TASKS = {"HalfCheetah": ("half_cheetah", "shifted"), "KukaReach": ("kuka_reach", "shifted")}


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
    task = envs.TASKS[key]
    ids = {"raw": task.nominal_id, "randomized_id": task.randomized_id, "target_id": task.target_id(target)}
    made = {k: gym.make(v) for k, v in ids.items()}
    spec = load_task(key)
    pinned = tuple(
        ParamSpec(param=p.param, names=p.names, value=1.0 if p.mode == "scale" else 0.0, mode=p.mode)
        for p in spec.randomization.params
        if p.mode != "abs"
    )
    wrapped = RandomizeDynamics(gym.make(task.nominal_id), RandomizationSpec(params=pinned))
    made["wrapped"] = apply_effects(wrapped, spec.targets[target].effects)
    rng = np.random.default_rng(0)
    space = made["raw"].action_space
    actions = rng.uniform(space.low, space.high, size=(steps, *space.shape)).astype(space.dtype)
    times: dict[str, list[float]] = {k: [] for k in made}
    for _ in range(repeats):
        for k, env in made.items():
            times[k].append(_time_steps(env, actions))
    result: dict[str, Any] = {"task": name, "steps": steps, "repeats": repeats, "ids": ids}
    for k in made:
        result[f"{k}_steps_per_s"] = steps / statistics.median(times[k])
    for k in ("wrapped", "randomized_id", "target_id"):
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
    print("| task | raw steps/s | wrapped steps/s | wrapper overhead | randomized id | target id |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['task']} | {r['raw_steps_per_s']:.0f} | {r['wrapped_steps_per_s']:.0f} | "
            f"{r['wrapped_overhead']:+.1%} | {r['randomized_id_steps_per_s']:.0f} "
            f"({r['randomized_id_overhead']:+.1%}) | {r['target_id_steps_per_s']:.0f} "
            f"({r['target_id_overhead']:+.1%}) |"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
