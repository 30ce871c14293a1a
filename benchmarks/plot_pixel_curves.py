"""Learning curves of camera policies on the randomized pixel source, from a run's TensorBoard logs.

Usage:
    python benchmarks/plot_pixel_curves.py RUN_DIR [RUN_DIR ...] --out docs/benchmarks/pixels.png

For every run directory: the reward-trained pixel policy (`pretrain_randomized/seed*`: SB3's
`rollout/ep_rew_mean`, stochastic training episodes) and the distilled camera student (`student/seed*`:
`distill/episode_return`, the episodes of the acting policy - the teacher acts with a probability
falling from 1 to 0 over the first half, so early points are mostly the teacher's) against source
env steps, one thin line per seed and the mean over seeds; the student's final deterministic return
(`distill.json`, 10 episodes on the final evaluation seeds) as a marker per seed. A run may hold
either or both. Labels come from the run directory's name.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

SERIES = {"pretrain_randomized": "rollout/ep_rew_mean", "student": "distill/episode_return"}
NAMES = {"pretrain_randomized": "reward-trained (PPO)", "student": "distilled (DAgger)"}


def scalars(folder: Path, tag: str) -> tuple[np.ndarray, np.ndarray]:
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    if tag not in events.Tags()["scalars"]:
        return np.zeros(0), np.zeros(0)
    points = events.Scalars(tag)
    return np.array([p.step for p in points]), np.array([p.value for p in points])


def mean_curve(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The mean over seeds on the first seed's steps (each seed interpolated onto them)."""
    steps = curves[0][0]
    return steps, np.mean([np.interp(steps, s, v) for s, v in curves], axis=0)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colors = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"])
    for run in args.runs:
        for stage, tag in SERIES.items():
            seeds = sorted((run / stage).glob("seed*"))
            curves = [c for c in (scalars(s, tag) for s in seeds) if len(c[0])]
            if not curves:
                continue
            color = next(colors)
            for steps, values in curves:
                ax.plot(steps, values, color=color, alpha=0.25, linewidth=0.8)
            steps, mean = mean_curve(curves)
            label = f"{run.name}: {NAMES[stage]}, mean of {len(curves)} seeds"
            ax.plot(steps, mean, color=color, linewidth=2, label=label)
            for seed in seeds:
                summary = seed / "distill.json"
                if summary.is_file():
                    d = json.loads(summary.read_text())
                    ax.scatter([d["steps"]], [d["student_source_return"]], color=color, marker="*", s=80)
    ax.set_xlabel("env steps on the randomized pixel source")
    ax.set_ylabel("episode return")
    ax.set_title("Camera policies on the randomized source (stars: final deterministic return per seed)")
    ax.legend(fontsize=8, loc="center right")
    ax.grid(alpha=0.3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
