"""What a KukaReach policy that never sees the target can reach: the yardstick below a camera student.

The camera student reads its joint encoders and the image; the target is only in the image. How much of
its return comes from the image? This runs a state teacher twice on the same episodes: reading the true
target, and "blind" - the target (and the target-minus-end-effector entries) replaced by the centre of
the target box, the best fixed guess for a uniform target. A camera student whose return is above the
blind one reads the target from the image; at the blind level it does not.

Usage:
    python benchmarks/kuka_blind_reach.py --policy RUN/pretrain_teacher/seed0/policy.pt [--episodes 10]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import simreal  # noqa: F401 - registers the simreal/ ids
from simreal.simulation.registry import PACKAGED
from simreal.training.engine.evaluation import normalize
from simreal.training.engine.sb3.loading import load_for_env

# KukaReachEnv's observation: q (7), qd (7), end effector (3), target (3), target - end effector (3).
EE, TARGET, DELTA = slice(14, 17), slice(17, 20), slice(20, 23)
SEED = 5000


def run(policy: Path, env_id: str, episodes: int, blind: bool) -> float:
    loaded = load_for_env(policy, lambda: gym.make(env_id), torch.device("cpu"), 0)
    env = loaded.make_env()
    box = env.unwrapped
    centre = 0.5 * (box._target_low + box._target_high)  # type: ignore[attr-defined]
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=SEED + episode)
        done, total = False, 0.0
        while not done:
            o = np.array(obs, dtype=np.float32)
            if blind:
                o[TARGET] = centre
                o[DELTA] = centre - o[EE]
            action, _ = loaded.model.predict(normalize(o[None], loaded.obs_rms), deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action[0])
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", type=Path, action="append", required=True, help="a state policy")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--target", default="shifted")
    args = parser.parse_args()
    task = PACKAGED["kuka_reach"]
    print("| policy | env | sees the target | blind (box centre) |")
    print("|---|---|---|---|")
    for policy in args.policy:
        for env_id in (task.randomized_id, task.target_id(args.target)):
            seen, blind = (run(policy, env_id, args.episodes, b) for b in (False, True))
            print(f"| {policy} | {env_id} | {seen:.1f} | {blind:.1f} |", flush=True)


if __name__ == "__main__":
    main()
