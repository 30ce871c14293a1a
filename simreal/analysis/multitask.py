"""The report's multi-task section: each pretraining task's return at the end of `pretrain_multitask`
(evaluated on its own randomized sim), mean over seeds (`pretrain_multitask/seed<N>/multitask.json`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from simreal.analysis.stage_files import per_seed

STAGE, SUMMARY = "pretrain_multitask", "multitask.json"


def gather(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """Every finished one under the run directories, in seed order."""
    return per_seed(run_dirs, STAGE, SUMMARY)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not runs:
        return None
    tasks = runs[0]["tasks"]
    return {
        "seeds": [r["seed"] for r in runs],
        "tasks": tasks,
        "weights": runs[0]["weights"],
        "sim_steps": runs[0]["sim_steps"],
        "held_out_as": {str(r["seed"]): r["held_out_as"] for r in runs},
        "conditioning": runs[0]["conditioning"],
        "heads": runs[0]["heads"],
        "return": {t: float(np.mean([r["evaluation"][t]["mean_return"] for r in runs])) for t in tasks},
    }


def _borrowed(by_seed: dict[str, str]) -> str:
    """`A` where every seed gave the held-out task one id, else `A (seeds 0, 2), B (seed 1)`."""
    names = sorted(set(by_seed.values()))
    if len(names) == 1:
        return names[0]
    parts = []
    for name in names:
        seeds = [s for s, n in by_seed.items() if n == name]
        parts.append(f"{name} (seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)})")
    return ", ".join(parts)


def lines(d: dict[str, Any] | None) -> list[str]:
    if d is None:
        return []
    out = [
        "",
        "## Multi-task pretraining",
        "",
        f"One policy pretrained on {len(d['tasks'])} tasks for {d['sim_steps']:,} sim steps (conditioning "
        f"`{d['conditioning']}`, heads `{d['heads']}`); the experiment's task, held out, is given the id "
        f"of {_borrowed(d['held_out_as'])}. Each task's return on its own randomized sim at the end (mean "
        f"of {len(d['seeds'])} seeds):",
        "",
        "| task | weight | return |",
        "|---|---|---|",
    ]
    out += [f"| {t} | {w:g} | {d['return'][t]:.1f} |" for t, w in zip(d["tasks"], d["weights"], strict=True)]
    return out
