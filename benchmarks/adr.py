"""ADR vs fixed randomization, zero-shot on an extrapolation target (issue: guarded fine-tuning).

Pretrains, per seed, one policy with the task's fixed ranges and one with `randomization.adr` over the
same declared ranges (ADR may reach them, not exceed them), then evaluates both zero-shot on the target
with the final evaluation's episodes and seeds. With `--reference-report` (a run's report.json on the
same target) the returns are also given as fractions of the way from untrained to its reference.
Writes between the markers of BENCHMARKS.md.

Usage:
    python benchmarks/adr.py --fixed runs/guards/pretrained \\
        --reference-report runs/guards/x1_shipped/report.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import yaml
from sections import write_section

from simreal import stats
from simreal.cli import main as simreal_main
from simreal.config import load_config
from simreal.simulation.registry import ensure
from simreal.training.engine.artifacts import load_policy
from simreal.training.engine.evaluation import evaluate
from simreal.training.engine.sb3.loading import load_for_env

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- adr:start -->", "<!-- adr:end -->"
CPU = torch.device("cpu")


def _adr_config(config: Path, out: Path, adr: dict[str, Any]) -> Path:
    """A copy of the experiment whose task (the packaged file, copied) has `randomization.adr`."""
    exp = yaml.safe_load(config.read_text())
    task = yaml.safe_load((ROOT / "configs" / "tasks" / f"{exp['task']}.yaml").read_text())
    task["randomization"]["adr"] = adr
    out.mkdir(parents=True, exist_ok=True)
    name = f"{exp['task']}_adr"
    (out / f"{name}.yaml").write_text(yaml.safe_dump(task, sort_keys=False))
    exp["task"] = f"{name}.yaml"
    path = out / "experiment.yaml"
    path.write_text(yaml.safe_dump(exp, sort_keys=False))
    return path


def _pretrain(config: Path, out: Path, name: str, seeds: str) -> Path:
    run = out / name
    args = ["pretrain", str(config), "--no-progress", "--seeds", seeds, "--set", f"output_dir={out}"]
    args += ["--set", f"experiment={name}", "--set", "pretrain.nominal_baseline=false"]
    if simreal_main(args) != 0:
        raise SystemExit(f"adr benchmark: pretraining {name} failed")
    return run


def _zero_shot(policy: Path, target_id: str, seed: int, episodes: int) -> float:
    loaded = load_for_env(policy, lambda: gym.make(target_id), CPU, seed)
    base = 200_000 + 1_000 * seed  # the final evaluation's episode seeds (Context.eval_seed)
    result = evaluate(loaded.model, loaded.make_env, episodes, base, loaded.obs_rms, loaded.encoder)
    return result.mean_return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "inverted_pendulum_extrapolate.yaml"))
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--adr", default="{expand_above: 900, shrink_below: 500}", help="randomization.adr")
    parser.add_argument("--fixed", help="a pretrain run directory of fixed-range policies (else pretrained)")
    parser.add_argument("--reference-report", help="a report.json on the same target, for the fractions")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--out", default=str(ROOT / "runs" / "adr"))
    parser.add_argument("--markdown", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args()
    config, out = Path(args.config), Path(args.out)
    seeds = [int(s) for s in args.seeds.split(",")]
    adr = yaml.safe_load(args.adr)
    fixed = Path(args.fixed) if args.fixed else _pretrain(config, out, "fixed", args.seeds)
    adr_run = _pretrain(_adr_config(config, out / "task", adr), out, "adr", args.seeds)
    cfg = load_config(config)
    target_id = ensure(cfg.task).target_id(cfg.target)
    returns: dict[str, list[float]] = {"fixed": [], "adr": []}
    ranges = []
    for seed in seeds:
        for name, run in (("fixed", fixed), ("adr", adr_run)):
            policy = run / "pretrain_randomized" / f"seed{seed}" / "policy.pt"
            returns[name].append(_zero_shot(policy, target_id, seed, args.episodes))
        ranges.append(load_policy(adr_run / "pretrain_randomized" / f"seed{seed}" / "policy.pt").meta["adr"])
    doc = json.loads(Path(args.reference_report).read_text()) if args.reference_report else None
    text = _section(args, returns, ranges, doc)
    write_section(Path(args.markdown), START, END, text, "ADR vs fixed randomization, zero-shot")
    print(text)
    return 0


def _fraction(value: float, doc: dict[str, Any] | None) -> str:
    if doc is None or doc.get("reference_return") is None or doc.get("untrained_return") is None:
        return "-"
    untrained, ref = doc["untrained_return"], doc["reference_return"]
    return f"{100 * (value - untrained) / (ref - untrained):.0f}%"


def _section(
    args: argparse.Namespace, returns: dict[str, list[float]], ranges: list[Any], doc: dict[str, Any] | None
) -> str:
    fixed, adr = np.array(returns["fixed"]), np.array(returns["adr"])
    p = stats.probability_of_improvement(adr, fixed)
    lines = [
        START,
        "",
        f"Command: `python benchmarks/adr.py --seeds {args.seeds} --adr '{args.adr}'`",
        "",
        f"Zero-shot on `{load_config(Path(args.config)).target}`, {args.episodes} episodes per seed (the "
        "final evaluation's seeds); fractions of the way from untrained to the reference"
        + (f" ({doc['reference_return']:.1f}, untrained {doc['untrained_return']:.1f})" if doc else "")
        + ":",
        "",
        "| randomization | per seed | mean | of the reference |",
        "|---|---|---|---|",
        f"| fixed ranges | {', '.join(f'{r:.1f}' for r in fixed)} | {fixed.mean():.1f} "
        f"| {_fraction(float(fixed.mean()), doc)} |",
        f"| ADR (same declared ranges as the most) | {', '.join(f'{r:.1f}' for r in adr)} | {adr.mean():.1f} "
        f"| {_fraction(float(adr.mean()), doc)} |",
        "",
        f"P(ADR > fixed) = {p:.2f}. Final ADR ranges, seed {args.seeds.split(',')[0]}: "
        + ", ".join(f"{label} [{lo:.3g}, {hi:.3g}]" for label, (lo, hi) in ranges[0]["ranges"].items())
        + " (declared: "
        + ", ".join(f"[{lo:.3g}, {hi:.3g}]" for lo, hi in ranges[0]["bounds"].values())
        + ").",
        "",
        END,
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
