"""The report's meta-learning section: what each seed's `pretrain_meta` cost in simulation steps beside
the randomized pretraining, so that equal-compute comparisons can be read off
(`pretrain_meta/seed<N>/meta.json`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from simreal.analysis.stage_files import per_seed

STAGE, SUMMARY = "pretrain_meta", "meta.json"


def gather(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """Every finished one under the run directories, in seed order."""
    return per_seed(run_dirs, STAGE, SUMMARY)


def summarize(per_seed: list[dict[str, Any]], randomized_steps: int) -> dict[str, Any] | None:
    if not per_seed:
        return None
    returns = [[h["inner_return"] for h in m["history"]] for m in per_seed]
    first = float(np.nanmean([r[0] for r in returns if r]))
    last = float(np.nanmean([r[-1] for r in returns if r]))
    return {
        "seeds": len(per_seed),
        "init": per_seed[0]["init"],
        "init_steps": per_seed[0]["init_steps"],
        "meta_steps": per_seed[0]["meta_steps"],
        "sim_steps": per_seed[0]["sim_steps"],
        "randomized_sim_steps": randomized_steps,
        "outer_steps": per_seed[0]["outer_steps"],
        "batch": per_seed[0]["batch"],
        "inner_steps": per_seed[0]["inner_steps"],
        "tasks": len(per_seed[0]["tasks"]),
        "inner_return_first": first,
        "inner_return_last": last,
    }


def lines(d: dict[str, Any] | None) -> list[str]:
    if d is None:
        return []
    start = "the randomized policy" if d["init"] == "randomized" else "a fresh network"
    return [
        "",
        "## Meta-learning",
        "",
        f"Reptile from {start}: {d['outer_steps']} outer steps, each adapting to {d['batch']} of "
        f"{d['tasks']} tasks drawn from the randomization for {d['inner_steps']:,} sim steps with the "
        f"configured fine-tuning. **Simulation steps: the meta-learned initialization {d['sim_steps']:,} "
        f"({d['init_steps']:,} before + {d['meta_steps']:,} meta-training), the randomized one "
        f"{d['randomized_sim_steps']:,}.** Inner-loop return (mean over {d['seeds']} seeds): "
        f"{d['inner_return_first']:.1f} at the first outer step, {d['inner_return_last']:.1f} at the last.",
    ]
