"""Does `simreal diagnose` rank targets by how much a policy loses on them? Spearman rho over shipped targets.

For each pretrained (randomized) policy and each of its task's targets: the diagnostic gap score from
`--episodes` episodes (`dynamics_gap.score`), and the measured zero-shot drop - the share of what the
policy learned that it loses on the target, `(R_source - R_target) / (R_source - R_untrained)`, each a
mean over `--eval-episodes` episodes (R_untrained: a randomly initialised policy of the same algorithm
on the source). Writes the table and rho between the two rankings between the markers of BENCHMARKS.md.

Usage:
    python benchmarks/diagnose_validation.py --policy runs/quickstart/pretrain_randomized/seed0/policy.pt \\
        --policy runs/kuka/pretrain_randomized/seed0/policy.pt --policy runs/reacher/...policy.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from scipy import stats
from sections import write_section

from simreal.analysis.diagnose import diagnose
from simreal.config import AlgoConfig
from simreal.simulation.registry import TASKS
from simreal.training.engine.artifacts import load_policy
from simreal.training.engine.evaluation import evaluate
from simreal.training.engine.sb3.loading import build_model, load_for_env

START, END = "<!-- diagnose:start -->", "<!-- diagnose:end -->"
CPU = torch.device("cpu")


def _mean_return(policy: Path, env_id: str, episodes: int) -> float:
    loaded = load_for_env(policy, lambda: gym.make(env_id), CPU, 0)
    return evaluate(
        loaded.model, loaded.make_env, episodes, 300_000, loaded.obs_rms, loaded.encoder
    ).mean_return


def _untrained(policy: Path, source: str, episodes: int) -> float:
    loaded = load_for_env(policy, lambda: gym.make(source), CPU, 0)
    algo = AlgoConfig.model_validate(load_policy(policy).meta["algo"])
    env = loaded.make_env()
    fresh = build_model(algo, env, algo.pretrain_lr, CPU, 12345)
    env.close()
    return evaluate(fresh, loaded.make_env, episodes, 300_000, None).mean_return


def rows(policy: Path, episodes: int, eval_episodes: int) -> list[dict[str, Any]]:
    meta = load_policy(policy).meta
    task = TASKS[meta["task"]]
    source = meta["env_id"]
    r_source = _mean_return(policy, source, eval_episodes)
    r_untrained = _untrained(policy, source, eval_episodes)
    out = []
    for target in task.spec.targets:
        target_id = task.target_id(target)
        d = diagnose(policy, target_id, episodes, 0, CPU)
        r_target = _mean_return(policy, target_id, eval_episodes)
        drop = (r_source - r_target) / (r_source - r_untrained) if r_source != r_untrained else float("nan")
        out.append(
            {
                "target": target_id,
                "gap": d["dynamics_gap"]["score"],
                "auc": d["observation_shift"]["auc"],
                "verdict": d["verdict"]["action"],
                "source": r_source,
                "target_return": r_target,
                "untrained": r_untrained,
                "drop": drop,
                "steps": d["target_steps"]["total"],
            }
        )
    return out


def section(results: list[dict[str, Any]], command: str) -> str:
    rho, p = stats.spearmanr([r["gap"] for r in results], [r["drop"] for r in results])
    lines = [
        START,
        "",
        f"Command: `{command}`",
        "",
        "| target | gap score | obs. AUC | verdict | R source / target / untrained | zero-shot drop "
        "| target steps |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(results, key=lambda r: r["gap"]):
        lines.append(
            f"| {r['target']} | {r['gap']:.2f} | {r['auc']:.2f} | {r['verdict']} | {r['source']:.1f} / "
            f"{r['target_return']:.1f} / {r['untrained']:.1f} | {r['drop']:.0%} | {r['steps']:,} |"
        )
    lines += [
        "",
        f"Spearman rho (gap score vs zero-shot drop) over {len(results)} targets: **{rho:.2f}** "
        f"(p = {p:.3f}).",
        "",
        END,
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", action="append", required=True, help="a pretrained randomized policy.pt")
    parser.add_argument("--episodes", type=int, default=5, help="diagnose's episodes on source and target")
    parser.add_argument("--eval-episodes", type=int, default=10, help="episodes behind each measured return")
    parser.add_argument("--markdown", default=str(Path(__file__).resolve().parents[1] / "BENCHMARKS.md"))
    args = parser.parse_args()
    results = [row for path in args.policy for row in rows(Path(path), args.episodes, args.eval_episodes)]
    command = "python benchmarks/diagnose_validation.py " + " ".join(f"--policy {p}" for p in args.policy)
    text = section(results, command)
    write_section(
        Path(args.markdown), START, END, text, "Does diagnose rank targets by their zero-shot drop?"
    )
    print(text)


if __name__ == "__main__":
    main()
