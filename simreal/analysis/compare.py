"""Compare the variants of a transfer experiment across seeds, gathered from one or more run directories.

Seeds are discovered as the ``<variant>/seed<N>/`` folders that hold both ``curve.json`` and
``final.json``, not taken from ``config.yaml``: seeds run by separate invocations or machines and copied
under one experiment directory all count, and several directories given together are merged per variant
(their task, target and target budget must agree; a seed found twice is an error, never counted twice).

Writes ``compare.md``, ``compare.json`` and ``compare.png`` (learning curves over target env steps with
95% bootstrap bands; zero-shot variants as horizontal lines). The numbers come from `metrics`:
the threshold is `metrics.default_threshold` over scratch and fine-tune, as in the run report.

Example:
    >>> compare([Path("runs/quickstart"), Path("runs/quickstart_more_seeds")])  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simreal.analysis import metrics as m
from simreal.config import ExperimentConfig, load_config
from simreal.training.artifacts import atomic_write_text
from simreal.training.loop import curve_arrays

log = logging.getLogger("simreal")

LABELS = {
    "finetune": "fine-tune (randomized -> target)",
    "scratch": "scratch on target",
    "zeroshot_randomized": "zero-shot randomized",
    "zeroshot_nominal": "zero-shot nominal",
}
LEARNING = ("finetune", "scratch")  # variants trained on the target: drawn as curves
CONFIDENCE = 0.95
_SEED_DIR = re.compile(r"seed(\d+)")


@dataclass
class Gathered:
    """Every finished seed of every variant, merged over run directories."""

    cfg: ExperimentConfig  # the first directory's config (task, target and budget agree across all)
    run_dirs: list[Path]
    curves: dict[str, list[m.Curve]] = field(default_factory=dict)
    finals: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    sources: dict[str, list[str]] = field(default_factory=dict)  # variant -> the seed folders used
    seeds: dict[str, list[int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Comparison:
    """What `compare` wrote and its data."""

    data: dict[str, Any]
    markdown: str
    json_path: Path
    markdown_path: Path
    plot_path: Path


def _seed_dirs(variant_dir: Path) -> list[tuple[int, Path]]:
    found = [
        (int(mt.group(1)), d)
        for d in variant_dir.iterdir()
        if (mt := _SEED_DIR.fullmatch(d.name)) and d.is_dir()
    ]
    return sorted(found)


def _check_same(configs: list[tuple[Path, ExperimentConfig]]) -> None:
    """One-line error when run directories disagree on task, target or target budget."""
    first_dir, first = configs[0]
    for run_dir, cfg in configs[1:]:
        for key, a, b in (
            ("task", first.task.name, cfg.task.name),
            ("target", first.target, cfg.target),
            ("finetune.timesteps (target budget)", first.finetune.timesteps, cfg.finetune.timesteps),
        ):
            if a != b:
                raise ValueError(f"cannot merge {first_dir} and {run_dir}: {key} differs ({a} vs {b})")


def gather(run_dirs: list[Path]) -> Gathered:
    """Load the curves and finals of every variant and seed found under `run_dirs`."""
    if not run_dirs:
        raise ValueError("compare: give at least one run directory")
    configs = []
    for run_dir in run_dirs:
        if not (run_dir / "config.yaml").is_file():
            raise FileNotFoundError(f"{run_dir}: no config.yaml (not a simreal run directory)")
        configs.append((run_dir, load_config(run_dir / "config.yaml", resolve=False)))
    _check_same(configs)
    found: dict[str, list[tuple[int, Path]]] = {}
    owner: dict[tuple[str, int], Path] = {}
    for run_dir in run_dirs:
        for variant in LABELS:
            for seed, stage in _seed_dirs(run_dir / variant) if (run_dir / variant).is_dir() else []:
                if not ((stage / "curve.json").is_file() and (stage / "final.json").is_file()):
                    log.warning("compare: %s is unfinished (no curve.json/final.json), skipped", stage)
                    continue
                if (variant, seed) in owner:
                    raise ValueError(
                        f"{variant} seed {seed} found in both {owner[variant, seed]} and {run_dir}: "
                        "a seed counts once (rename one seed folder if they really differ)"
                    )
                owner[variant, seed] = run_dir
                found.setdefault(variant, []).append((seed, stage))
    out = Gathered(configs[0][1], list(run_dirs))
    for variant, stages in found.items():  # in seed order, so jumpstart pairs fine-tune and scratch by seed
        for seed, stage in sorted(stages):
            out.curves.setdefault(variant, []).append(
                curve_arrays(json.loads((stage / "curve.json").read_text()))
            )
            out.finals.setdefault(variant, []).append(json.loads((stage / "final.json").read_text()))
            out.sources.setdefault(variant, []).append(str(stage))
            out.seeds.setdefault(variant, []).append(seed)
    if not out.finals:
        raise ValueError(f"compare: no finished seeds under {', '.join(map(str, run_dirs))}")
    for variant, curves in out.curves.items():
        grids = {tuple(np.asarray(c[0]).tolist()) for c in curves}
        if len(grids) > 1:
            raise ValueError(
                f"{variant}: seeds were evaluated at different target steps ({len(grids)} grids among "
                f"{', '.join(out.sources[variant])}); compare needs one evaluation grid per variant"
            )
    return out


def _returns(finals: list[dict[str, Any]]) -> np.ndarray:
    """Each seed's final mean return."""
    return np.array([f["mean_return"] for f in finals], dtype=np.float64)


def _ci(low: float | None, high: float | None) -> list[float | None]:
    return [low, high]


def _final_row(values: np.ndarray, statistic: m.Statistic, rng: np.random.Generator) -> dict[str, Any]:
    s = m.summary(values, CONFIDENCE)
    low, high = m.bootstrap_ci(values, statistic, CONFIDENCE, rng=rng)
    center = s.mean if statistic == "mean" else s.iqm
    return {"n": s.n, statistic: center, "ci95": _ci(low, high), "mean": s.mean, "std": s.std}


def build_comparison(
    data: Gathered, statistic: m.Statistic = "mean", threshold_fraction: float | None = None
) -> dict[str, Any]:
    """The comparison as plain data: one row per variant, plus the threshold and its provenance."""
    rng = np.random.default_rng(0)
    cfg = data.cfg
    fraction = cfg.evaluation.threshold_fraction if threshold_fraction is None else threshold_fraction
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"--threshold-fraction: must be in (0, 1], got {fraction}")
    ft, sc = data.curves.get("finetune"), data.curves.get("scratch")
    finals = {v: _returns(fin) for v, fin in data.finals.items()}
    out: dict[str, Any] = {
        "task": cfg.task.name,
        "target": cfg.target,
        "algo": cfg.algo.name,
        "target_budget": cfg.finetune.timesteps,
        "run_dirs": [str(d) for d in data.run_dirs],
        "statistic": statistic,
        "confidence": CONFIDENCE,
        "threshold_fraction": fraction,
        "threshold": None,
        "variants": {},
    }
    threshold = None
    if sc:
        try:
            threshold = m.default_threshold(sc, fraction, variants=[ft] if ft else [])
        except ValueError as err:
            out["threshold_note"] = str(err)
    out["threshold"] = threshold
    for variant in LABELS:
        if variant not in finals:
            continue
        curves = data.curves[variant]
        row: dict[str, Any] = {
            "label": LABELS[variant],
            "seeds": data.sources[variant],
            "final_return": _final_row(finals[variant], statistic, rng),
            "jumpstart": None,
            "steps_to_threshold": None,
            "sample_efficiency_ratio": None,
            "p_beats_scratch": None,
        }
        if threshold is not None:
            row["steps_to_threshold"] = m.mean_steps_to_threshold(curves, threshold)
        if sc and variant != "scratch":
            js = m.jumpstart(curves, sc, CONFIDENCE)
            row["jumpstart"] = {"mean": js.mean, "ci95": _ci(js.ci_low, js.ci_high), "n": js.n}
            row["p_beats_scratch"] = m.probability_of_improvement(finals[variant], finals["scratch"])
        if variant == "finetune" and sc and threshold is not None:
            r = m.sample_efficiency_ratio(curves, sc, threshold, CONFIDENCE, rng=rng)
            row["sample_efficiency_ratio"] = {
                "estimate": r.estimate,
                "kind": r.kind,
                "ci95": _ci(r.ci_low, r.ci_high),
                "finetune_floored": r.finetune_floored,
                "text": r.describe(),
            }
        out["variants"][variant] = row
    return out


def _num(x: float | None, fmt: str = ".1f", none: str = "-") -> str:
    return none if x is None else format(x, fmt)


def to_markdown(c: dict[str, Any]) -> str:
    """One table, a row per variant, and a line on how the threshold was set."""
    stat = c["statistic"]
    lines = [
        f"# Comparison: {c['task']} -> {c['target']} ({c['algo']})",
        "",
        f"Target budget {c['target_budget']} steps; seeds from {', '.join(c['run_dirs'])}. "
        f"Final return: {stat} across seeds with a 95% bootstrap CI.",
        "",
        f"| variant | seeds | final return ({stat}) [95% CI] | jumpstart vs scratch [95% CI] "
        "| steps to threshold | sample-efficiency ratio [95% CI] | P(> scratch) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in c["variants"].values():
        f = row["final_return"]
        final = f"{f[stat]:.1f} [{_num(f['ci95'][0])}, {_num(f['ci95'][1])}]"
        js = row["jumpstart"]
        jump = "-" if js is None else f"{js['mean']:.1f} [{_num(js['ci95'][0])}, {_num(js['ci95'][1])}]"
        steps = "-" if c["threshold"] is None else _num(row["steps_to_threshold"], ".0f", "not reached")
        ratio = "-" if row["sample_efficiency_ratio"] is None else row["sample_efficiency_ratio"]["text"]
        p = _num(row["p_beats_scratch"], ".2f")
        lines.append(f"| {row['label']} | {f['n']} | {final} | {jump} | {steps} | {ratio} | {p} |")
    lines.append("")
    if c["threshold"] is not None:
        lines.append(
            f"Threshold {c['threshold']:.1f}: {c['threshold_fraction']:.0%} of the way from the worst "
            "initial return to scratch's final return; steps to threshold on the mean curve across seeds."
        )
    elif "threshold_note" in c:
        lines.append(f"Threshold not defined: {c['threshold_note']}")
    return "\n".join(lines) + "\n"


def plot(data: Gathered, statistic: m.Statistic, path: Path, threshold: float | None = None) -> None:
    """Curves of the target-trained variants with bootstrap bands; zero-shot variants as flat lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    colors = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"])
    for variant, label in LABELS.items():
        if variant not in data.curves:
            continue
        color, n = next(colors), len(data.curves[variant])
        if variant in LEARNING:
            band = m.curve_band(data.curves[variant], statistic, CONFIDENCE, rng=rng)
            ax.plot(band.steps, band.center, color=color, label=f"{label} (n={n})")
            ax.fill_between(band.steps, band.low, band.high, color=color, alpha=0.2)
        else:
            values = _returns(data.finals[variant])
            s = m.summary(values, CONFIDENCE)
            center = s.mean if statistic == "mean" else s.iqm
            low, high = m.bootstrap_ci(values, statistic, CONFIDENCE, rng=rng)
            ax.axhline(center, color=color, linestyle="--", label=f"{label} (n={n})")
            ax.axhspan(low, high, color=color, alpha=0.1)
    if threshold is not None:
        ax.axhline(threshold, color="gray", linestyle=":", linewidth=1, label="threshold")
    ax.set_xlabel("target environment steps")
    ax.set_ylabel(f"evaluation return on target ({statistic}, 95% CI)")
    cfg = data.cfg
    ax.set_title(f"{cfg.task.name} -> {cfg.target} ({cfg.algo.name})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def compare(
    run_dirs: list[Path],
    out: Path | None = None,
    statistic: m.Statistic = "mean",
    threshold_fraction: float | None = None,
) -> Comparison:
    """Gather, compute, write compare.json/.md/.png into `out` (default: the first run directory)."""
    data = gather(run_dirs)
    result = build_comparison(data, statistic, threshold_fraction)
    out_dir = out if out is not None else run_dirs[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = to_markdown(result)
    paths = (out_dir / "compare.json", out_dir / "compare.md", out_dir / "compare.png")
    atomic_write_text(json.dumps(result, indent=1), paths[0])
    atomic_write_text(markdown, paths[1])
    plot(data, statistic, paths[2], result["threshold"])
    return Comparison(result, markdown, *paths)
