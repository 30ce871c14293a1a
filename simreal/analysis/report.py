"""The experiment report: per-variant returns with CIs, transfer metrics, verdicts, and a curves plot.

Reads only what the stages wrote (`curve.json`, `final.json` per variant and seed), so it can be
regenerated at any time (`simreal report RUN_DIR`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from simreal.analysis import metrics as m
from simreal.analysis.compare import LABELS, Gathered, gather, plot
from simreal.config import ExperimentConfig
from simreal.training.artifacts import atomic_write_text


def _summary(s: m.Summary) -> dict[str, float]:
    return {
        "n": s.n,
        "mean": s.mean,
        "std": s.std,
        "ci95_low": s.ci_low,
        "ci95_high": s.ci_high,
        "iqm": s.iqm,
    }


def build_report(gathered: Gathered, cfg: ExperimentConfig) -> dict[str, Any]:
    """All numbers of the report as plain data, from what `compare.gather` read of the run."""
    rng = np.random.default_rng(0)
    report: dict[str, Any] = {
        "experiment": cfg.experiment,
        "task": cfg.task.name,
        "target": cfg.target,
        "algo": cfg.algo.name,
        "seeds": cfg.seeds,
        "pretrain_steps": cfg.pretrain.timesteps,
        "target_budget": cfg.finetune.timesteps,
        "variants": {},
    }
    data = {v: (gathered.curves.get(v, []), gathered.finals.get(v, [])) for v in LABELS}
    finals: dict[str, np.ndarray] = {}
    for variant, (curves, fin) in data.items():
        if not fin:
            continue
        per_seed = np.array([f["mean_return"] for f in fin])
        finals[variant] = per_seed
        entry: dict[str, Any] = {
            "label": LABELS[variant],
            "final_return": _summary(m.summary(per_seed)),
            "per_seed_final_return": per_seed.tolist(),
        }
        rates = [f["success_rate"] for f in fin if f["success_rate"] is not None]
        if rates:
            entry["success_rate"] = _summary(m.summary(rates))
        if variant in ("finetune", "scratch"):
            entry["return_at_budget_curve"] = _summary(m.return_at_budget(curves))
            entry["area_under_curve"] = _summary(m.area_under_curve(curves))
        report["variants"][variant] = entry
    ft_curves, sc_curves = data["finetune"][0], data["scratch"][0]
    transfer: dict[str, Any] = {"threshold_fraction": cfg.evaluation.threshold_fraction}
    if ft_curves and sc_curves:
        transfer["jumpstart"] = _summary(m.jumpstart(ft_curves, sc_curves))
        try:
            threshold = m.default_threshold(
                sc_curves, cfg.evaluation.threshold_fraction, variants=[ft_curves]
            )
        except ValueError as err:
            transfer["threshold_note"] = str(err)
        else:
            ratio = m.sample_efficiency_ratio(ft_curves, sc_curves, threshold, rng=rng)
            transfer.update(
                {
                    "threshold": threshold,
                    "finetune_steps_to_threshold": ratio.finetune_steps,
                    "scratch_steps_to_threshold": ratio.scratch_steps,
                    "sample_efficiency_ratio": ratio.estimate,
                    "ratio_kind": ratio.kind,
                    "ratio_ci95": [ratio.ci_low, ratio.ci_high],
                    "ratio_text": ratio.describe(),
                }
            )
    if "finetune" in finals and "scratch" in finals:
        transfer["p_finetune_beats_scratch"] = m.probability_of_improvement(
            finals["finetune"], finals["scratch"]
        )
        transfer["finetune_beats_scratch"] = bool(finals["finetune"].mean() > finals["scratch"].mean())
    if "zeroshot_randomized" in finals and "zeroshot_nominal" in finals:
        zr, zn = finals["zeroshot_randomized"], finals["zeroshot_nominal"]
        transfer["p_randomized_beats_nominal_zeroshot"] = m.probability_of_improvement(zr, zn)
        transfer["randomized_beats_nominal_zeroshot"] = bool(zr.mean() > zn.mean())
    report["transfer"] = transfer
    return report


def _fmt(s: dict[str, float]) -> str:
    return f"{s['mean']:.1f} ± {s['std']:.1f} [{s['ci95_low']:.1f}, {s['ci95_high']:.1f}]"


def to_markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown page: a variant table, transfer metrics and verdicts."""
    lines = [
        f"# Transfer report: {report['experiment']}",
        "",
        f"Task `{report['task']}`, target `{report['target']}`, {report['algo']}, seeds {report['seeds']}, "
        f"pretraining {report['pretrain_steps']} steps, target budget {report['target_budget']} steps.",
        "",
        "| variant | final return on target: mean ± std [95% CI] | success rate | per seed |",
        "|---|---|---|---|",
    ]
    for entry in report["variants"].values():
        sr = _fmt(entry["success_rate"]) if "success_rate" in entry else "-"
        seeds = ", ".join(f"{x:.1f}" for x in entry["per_seed_final_return"])
        lines.append(f"| {entry['label']} | {_fmt(entry['final_return'])} | {sr} | {seeds} |")
    t = report["transfer"]
    lines += ["", "| transfer metric | value |", "|---|---|"]
    if "jumpstart" in t:
        lines.append(f"| jumpstart (first evaluation, fine-tune - scratch) | {_fmt(t['jumpstart'])} |")
    if "threshold" in t:
        lines.append(
            f"| threshold ({t['threshold_fraction']:.0%} of the way from worst start to scratch's "
            f"final return) | {t['threshold']:.1f} |"
        )
        for name in ("finetune", "scratch"):
            steps = t[f"{name}_steps_to_threshold"]
            lines.append(
                f"| {name} target steps to threshold | {'not reached' if steps is None else f'{steps:.0f}'} |"
            )
        lines.append(f"| sample-efficiency ratio (scratch / fine-tune steps) | {t['ratio_text']} |")
    elif "threshold_note" in t:
        lines.append(f"| threshold | not defined: {t['threshold_note']} |")
    if "p_finetune_beats_scratch" in t:
        lines.append(f"| P(fine-tune > scratch), final return | {t['p_finetune_beats_scratch']:.2f} |")
    if "p_randomized_beats_nominal_zeroshot" in t:
        lines.append(
            f"| P(randomized > nominal), zero-shot | {t['p_randomized_beats_nominal_zeroshot']:.2f} |"
        )
    lines += [""]
    if "finetune_beats_scratch" in t:
        verdict = "beats" if t["finetune_beats_scratch"] else "does NOT beat"
        lines.append(
            f"- Fine-tuning {verdict} training from scratch at the same target budget (mean final return)."
        )
    if "randomized_beats_nominal_zeroshot" in t:
        verdict = "beats" if t["randomized_beats_nominal_zeroshot"] else "does NOT beat"
        lines.append(
            f"- The randomized policy's zero-shot return on the target {verdict} the nominal policy's."
        )
    return "\n".join(lines) + "\n"


def write_report(run_dir: Path, cfg: ExperimentConfig) -> dict[str, Any]:
    """Write report.json, report.md and curves.png into `run_dir`; returns the report data."""
    gathered = gather([run_dir])
    report = build_report(gathered, cfg)
    atomic_write_text(json.dumps(report, indent=1), run_dir / "report.json")
    atomic_write_text(to_markdown(report), run_dir / "report.md")
    plot(gathered, "mean", run_dir / "curves.png", report["transfer"].get("threshold"))
    return report
