"""One result document for a transfer experiment: what `report.json` and `compare.json` both hold.

`gather(run_dirs)` reads what the stages wrote (`<variant>/seed<N>/curve.json` and `final.json`) from one
or more run directories; `build_results` turns it into plain data with one schema (`SCHEMA`). A run's
report is the comparison of that one run, so `report.json` and `compare.json` of the same directory are
the same document. Seeds are discovered as folders, not taken from `config.yaml`: seeds run by separate
invocations or machines and copied under one experiment directory all count, and several directories are
merged per variant (task, target and budget must agree; a seed found twice is an error).

What "good" means comes from a *reference*: `evaluation.success_return` when the user gives one, else
the reference stage (scratch on the target for `reference.timesteps`). The threshold is
`untrained + threshold_fraction * (reference - untrained)`, scratch's steps to it are read from the
reference stage's curve (scratch gets the chance to get there), fine-tune's from its own, and every
zero-shot and final return is also given as a fraction of the way from untrained to the reference.
Every 95% CI is `stats.CI_METHOD`.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simreal import stats
from simreal.analysis import calibration, meta, multitask
from simreal.analysis import metrics as m
from simreal.config import ExperimentConfig, load_config
from simreal.simulation.accounting import PURPOSES, STEPS
from simreal.training.engine.method import Variant, declared_variants
from simreal.training.engine.pipeline import VARIANTS_FILE

log = logging.getLogger("simreal")

SCHEMA = "simreal-results-v1"
CONFIDENCE = 0.95
_SEED_DIR = re.compile(r"seed(\d+)")


@dataclass
class Gathered:
    """Every finished seed of every variant, merged over run directories."""

    cfg: ExperimentConfig  # the first directory's config (task, target and budget agree across all)
    run_dirs: list[Path]
    variants: dict[str, Variant] = field(default_factory=dict)  # as the methods declared them, report order
    curves: dict[str, list[m.Curve]] = field(default_factory=dict)
    success: dict[str, list[m.Curve]] = field(default_factory=dict)  # success-rate curves, where reported
    finals: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    sources: dict[str, list[str]] = field(default_factory=dict)  # variant -> the seed folders used
    reference_sources: list[str] = field(default_factory=list)  # where the reference stage was trained
    steps: dict[str, list[dict[str, int]]] = field(default_factory=dict)  # target steps, where recorded
    auto: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # finetune.auto's search, per seed
    distill: list[dict[str, Any]] = field(default_factory=list)  # distill.json of each student, seed order
    calibration: list[dict[str, Any]] = field(default_factory=list)  # calibration.json of each seed
    meta: list[dict[str, Any]] = field(default_factory=list)  # meta.json of each seed's pretrain_meta
    multitask: list[dict[str, Any]] = field(default_factory=list)  # multitask.json of each seed


def _seed_dirs(variant_dir: Path) -> list[tuple[int, Path]]:
    found = [
        (int(mt.group(1)), d)
        for d in variant_dir.iterdir()
        if (mt := _SEED_DIR.fullmatch(d.name)) and d.is_dir()
    ]
    return sorted(found)


def declared(run_dir: Path, cfg: ExperimentConfig) -> list[Variant]:
    """The variants a run's methods declared (its `variants.json`; for a run from before that file, the
    packaged methods')."""
    path = run_dir / VARIANTS_FILE
    if path.is_file():
        return [Variant.from_dict(d) for d in json.loads(path.read_text())]
    return declared_variants(cfg.model_copy(update={"methods": []}))


POOLABLE = (
    "experiment",
    "output_dir",
    "seeds",
    "workers",
    "device",
    "torch_threads",
    "checkpoint_every_steps",
)
"""Keys that say where and how wide a run ran, not what its seeds measure: runs differing only in these
pool their seeds."""


def _check_same(configs: list[tuple[Path, ExperimentConfig]], separate: bool) -> None:
    """One-line error when run directories cannot be compared: another task or target (always); with
    pooling, also anything else in the resolved configs that changes what a seed measures."""
    first_dir, first = configs[0]
    for run_dir, cfg in configs[1:]:
        checks: list[tuple[str, Any, Any]] = [
            ("task", first.task.name, cfg.task.name),
            ("target", first.target, cfg.target),
        ]
        if not separate:
            checks += [
                ("finetune.timesteps (target budget)", first.finetune.timesteps, cfg.finetune.timesteps),
                ("reference timesteps", first.reference_steps, cfg.reference_steps),
            ]
        for key, a, b in checks:
            if a != b:
                raise ValueError(f"cannot merge {first_dir} and {run_dir}: {key} differs ({a} vs {b})")
        differ = [] if separate else differences(first, cfg)
        if differ:
            shown = ", ".join(f"{k} ({a} vs {b})" for k, a, b in differ[:4])
            more = f" and {len(differ) - 4} more" if len(differ) > 4 else ""
            raise ValueError(
                f"cannot pool the seeds of {first_dir} and {run_dir}: their configs differ in {shown}{more} "
                "(allowed: runs of one experiment; to put different runs side by side, compare --separate)"
            )


def differences(a: ExperimentConfig, b: ExperimentConfig) -> list[tuple[str, Any, Any]]:
    """The resolved-config keys (dotted) whose values differ, outside `POOLABLE` and the task file's path."""
    flat_a, flat_b = _flat(a.model_dump(mode="json")), _flat(b.model_dump(mode="json"))
    keys = sorted(flat_a.keys() | flat_b.keys())
    return [
        (k, flat_a.get(k), flat_b.get(k))
        for k in keys
        if k.split(".")[0] not in POOLABLE and k != "task.source" and flat_a.get(k) != flat_b.get(k)
    ]


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _tags(run_dirs: list[Path]) -> list[str]:
    """How each run's rows are told apart side by side: its directory's name (its path if names repeat)."""
    names = [d.name for d in run_dirs]
    return [d.name if names.count(d.name) == 1 else str(d) for d in run_dirs]


def _renamed(v: Variant, tag: str) -> Variant:
    """A later run's variant beside the first run's: its name and label carry the run's tag."""
    return Variant(
        f"{v.name}@{tag}",
        f"{v.label} [{tag}]",
        v.learning,
        tuple((f"{other}@{tag}", f"{key}@{tag}") for other, key in v.beats),
        tuple((f"{other}@{tag}", f"{key}@{tag}") for other, key in v.below),
    )


def _curve_of(points: list[dict[str, Any]], key: str) -> m.Curve | None:
    if any(p.get(key) is None for p in points):
        return None
    return np.array([p["step"] for p in points], dtype=np.int64), np.array(
        [p[key] for p in points], dtype=float
    )


def gather(run_dirs: list[Path], separate: bool = False) -> Gathered:
    """Load the curves and finals of every variant and seed found under `run_dirs`: pooled per variant
    (runs of one experiment), or with `separate` each later run's variants as rows of their own beside
    the first run's (whose scratch and reference are then the yardstick for all)."""
    if not run_dirs:
        raise ValueError("compare: give at least one run directory")
    configs = []
    for run_dir in run_dirs:
        if not (run_dir / "config.yaml").is_file():
            raise FileNotFoundError(f"{run_dir}: no config.yaml (not a simreal run directory)")
        configs.append((run_dir, load_config(run_dir / "config.yaml", resolve=False)))
    _check_same(configs, separate)
    variants: dict[str, Variant] = {}
    folders: dict[tuple[Path, str], str] = {}  # (run, variant folder) -> the row it belongs to
    for i, ((run_dir, cfg), tag) in enumerate(zip(configs, _tags(run_dirs), strict=True)):
        for v in declared(run_dir, cfg):
            row = _renamed(v, tag) if separate and i > 0 else v
            variants.setdefault(row.name, row)
            folders[run_dir, v.name] = row.name
    found: dict[str, list[tuple[int, Path]]] = {}
    owner: dict[tuple[str, int], Path] = {}
    for (run_dir, folder), variant in folders.items():
        for seed, stage in _seed_dirs(run_dir / folder) if (run_dir / folder).is_dir() else []:
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
    out = Gathered(configs[0][1], list(run_dirs), variants)
    for variant, stages in found.items():  # in seed order, so jumpstart pairs fine-tune and scratch by seed
        for _, stage in sorted(stages):
            points = json.loads((stage / "curve.json").read_text())
            returns = _curve_of(points, "mean_return")
            assert returns is not None
            out.curves.setdefault(variant, []).append(returns)
            rates = _curve_of(points, "success_rate")
            if rates is not None:
                out.success.setdefault(variant, []).append(rates)
            out.finals.setdefault(variant, []).append(json.loads((stage / "final.json").read_text()))
            out.sources.setdefault(variant, []).append(str(stage))
            if (stage / STEPS).is_file():
                out.steps.setdefault(variant, []).append(json.loads((stage / STEPS).read_text()))
            if (stage / "auto.json").is_file():
                out.auto.setdefault(variant, []).append(json.loads((stage / "auto.json").read_text()))
            if variant == "reference" and (stage / "source.json").is_file():
                source = str(Path(json.loads((stage / "source.json").read_text())["source"]).parent)
                if source not in out.reference_sources:
                    out.reference_sources.append(source)
    for run_dir in run_dirs[:1] if separate else run_dirs:
        student = run_dir / "student"
        for seed, stage in _seed_dirs(student) if student.is_dir() else []:
            if (stage / "distill.json").is_file():
                out.distill.append({"seed": seed, **json.loads((stage / "distill.json").read_text())})
    out.calibration = calibration.gather(run_dirs[:1] if separate else run_dirs)
    out.meta = meta.gather(run_dirs[:1] if separate else run_dirs)
    out.multitask = multitask.gather(run_dirs[:1] if separate else run_dirs)
    if not out.finals:
        raise ValueError(f"compare: no finished seeds under {', '.join(map(str, run_dirs))}")
    for variant, curves in out.curves.items():
        if len({tuple(np.asarray(c[0]).tolist()) for c in curves}) > 1:
            raise ValueError(
                f"{variant}: seeds were evaluated at different target steps (among "
                f"{', '.join(out.sources[variant])}); a comparison needs one evaluation grid per variant"
            )
    return out


def _interval(values: np.ndarray, statistic: stats.Statistic) -> dict[str, Any]:
    """A summary of one value per seed: center statistics and the bootstrap CI of `statistic`."""
    row = _summary(stats.summary(values, CONFIDENCE))
    if statistic != "mean":
        row["ci95"] = list(stats.bootstrap_ci(values, statistic, CONFIDENCE, rng=stats.seeded(None)))
    return row


def _summary(s: stats.Summary) -> dict[str, Any]:
    return {
        "n": s.n,
        "mean": s.mean,
        "std": s.std,
        "median": s.median,
        "iqm": s.iqm,
        "ci95": [s.ci_low, s.ci_high],
    }


def _finals(data: Gathered) -> dict[str, np.ndarray]:
    return {v: np.array([f["mean_return"] for f in fin], dtype=np.float64) for v, fin in data.finals.items()}


def _reference(data: Gathered, finals: dict[str, np.ndarray]) -> tuple[dict[str, Any], float | None]:
    """Where "good" comes from, and the untrained policy's return (None when nothing was trained)."""
    cfg = data.cfg
    untrained = None
    for variant in ("reference", "scratch"):
        if variant in data.curves:
            untrained = m.untrained_return(data.curves[variant])
            break
    if cfg.evaluation.success_return is not None:
        ref = {"kind": "success_return", "return": cfg.evaluation.success_return}
        ref["note"] = "evaluation.success_return, given in the config"
    elif "reference" in finals:
        ref = {"kind": "reference_stage", "return": float(finals["reference"].mean())}
        ref["note"] = (
            f"scratch on the target for {cfg.reference_steps:,} steps, mean final return over "
            f"{finals['reference'].size} seeds"
        )
    else:
        why = "reference: false" if cfg.reference_steps is None else "the reference stage has not finished"
        ref = {"kind": "none", "return": None, "note": f"no reference ({why}; set evaluation.success_return)"}
    ref["timesteps"] = cfg.reference_steps
    ref["sources"] = list(data.reference_sources)
    return ref, untrained


def _ratio(
    data: Gathered, threshold: float | None, why: str | None, fraction: float, variant: str = "finetune"
) -> dict[str, Any]:
    """The yardstick for `variant`'s curves (fine-tuning; a distilled student's fine-tuning too)."""
    ft = data.curves.get(variant)
    scratch_variant = "reference" if "reference" in data.curves else "scratch"
    sc = data.curves.get(scratch_variant)
    if threshold is None or ft is None or sc is None:
        reason = why or ("no fine-tune curves" if ft is None else "no scratch or reference curves")
        return {"kind": "undefined", "estimate": None, "ci95": [None, None], "text": f"no ratio: {reason}"}
    r = m.sample_efficiency_ratio(ft, sc, threshold, CONFIDENCE, rng=stats.seeded(None))
    return {
        "kind": r.kind,
        "estimate": r.estimate,
        "ci95": [r.ci_low, r.ci_high],
        "finetune_steps": r.finetune_steps,
        "scratch_steps": r.scratch_steps,
        "scratch_curves": scratch_variant,
        "finetune_budget": r.finetune_budget,
        "scratch_budget": r.scratch_budget,
        "finetune_floored": r.finetune_floored,
        "text": m.describe_ratio(
            r, fraction, "the fine-tuned student" if variant == "finetune_student" else "fine-tune"
        ),
    }


def build_results(
    data: Gathered, statistic: stats.Statistic = "mean", threshold_fraction: float | None = None
) -> dict[str, Any]:
    """The result document (schema `SCHEMA`) of the gathered seeds."""
    cfg = data.cfg
    fraction = cfg.evaluation.threshold_fraction if threshold_fraction is None else threshold_fraction
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"--threshold-fraction: must be in (0, 1], got {fraction}")
    finals = _finals(data)
    reference, untrained = _reference(data, finals)
    ref_return = reference["return"]
    threshold = why = None
    if ref_return is None or untrained is None:
        why = (
            reference["note"]
            if ref_return is None
            else "no scratch or reference stage: nothing untrained was evaluated"
        )
    else:
        try:
            threshold = m.reference_threshold(untrained, ref_return, fraction)
        except ValueError as err:
            why = str(err)
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "experiment": cfg.experiment,
        "task": cfg.task.name,
        "target": cfg.target,
        "algo": cfg.algo.name,
        "run_dirs": [str(d) for d in data.run_dirs],
        "pretrain_steps": cfg.pretrain.timesteps,
        "target_budget": cfg.finetune.timesteps,
        "train_budget": _train_budget(data),
        "count_in_budget": cfg.evaluation.count_in_budget,
        "statistic": statistic,
        "confidence": CONFIDENCE,
        "ci_method": stats.CI_METHOD,
        "untrained_return": untrained,
        "reference_return": ref_return,
        "reference": reference,
        "threshold_fraction": fraction,
        "threshold": threshold,
        "threshold_note": why,
        "sample_efficiency_ratio": _ratio(data, threshold, why, fraction),
        "variants": {},
    }
    if "finetune_student" in data.curves:
        doc["student_sample_efficiency_ratio"] = _ratio(data, threshold, why, fraction, "finetune_student")
    if "finetune_calibrated" in data.curves:
        doc["calibrated_sample_efficiency_ratio"] = _ratio(
            data, threshold, why, fraction, "finetune_calibrated"
        )
    for variant in data.variants:
        if variant in finals:
            doc["variants"][variant] = _variant_row(
                data, variant, finals, threshold, untrained, ref_return, statistic
            )
    doc["comparisons"] = _comparisons(finals, list(data.variants.values()))
    doc["distillation"] = _distillation(data.distill)
    doc["calibration"] = calibration.summarize(data.calibration)
    doc["meta_learning"] = meta.summarize(data.meta, data.cfg.pretrain.timesteps)
    doc["multitask"] = multitask.summarize(data.multitask)
    return doc


def _distillation(per_seed: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What distillation cost (sim steps, wall time) and kept (the student's return in the randomized
    sim as a fraction of the teacher's), over the seeds."""
    if not per_seed:
        return None
    teacher = np.array([d["teacher_source_return"] for d in per_seed])
    student = np.array([d["student_source_return"] for d in per_seed])
    untrained = np.array([d.get("untrained_source_return", np.nan) for d in per_seed], dtype=float)
    kept = None  # of the way from an untrained student to the teacher, as fractions of the reference are
    if np.all(np.isfinite(untrained)) and teacher.mean() > untrained.mean():
        kept = float((student.mean() - untrained.mean()) / (teacher.mean() - untrained.mean()))
    return {
        "seeds": [d["seed"] for d in per_seed],
        "steps": int(np.mean([d["steps"] for d in per_seed])),
        "wall_s": float(np.mean([d["wall_s"] for d in per_seed])),
        "teacher_source_return": float(teacher.mean()),
        "student_source_return": float(student.mean()),
        "untrained_source_return": float(untrained.mean()) if np.all(np.isfinite(untrained)) else None,
        "student_fraction_of_teacher": kept,
        "teacher_params": per_seed[0]["teacher_params"],
        "student_params": per_seed[0]["student_params"],
        "per_seed": per_seed,
    }


def _variant_row(
    data: Gathered,
    variant: str,
    finals: dict[str, np.ndarray],
    threshold: float | None,
    untrained: float | None,
    reference: float | None,
    statistic: stats.Statistic,
) -> dict[str, Any]:
    curves = data.curves[variant]
    values = finals[variant]
    rates = [f["success_rate"] for f in data.finals[variant] if f["success_rate"] is not None]
    row: dict[str, Any] = {
        "label": data.variants[variant].label,
        "seeds": data.sources[variant],
        "per_seed_final_return": values.tolist(),
        "final_return": _interval(values, statistic),
        "success_rate": _interval(np.array(rates), statistic) if rates else None,
        "steps_to_threshold": None if threshold is None else m.mean_steps_to_threshold(curves, threshold),
        "fraction_of_reference": None,
        "jumpstart": None,
        "p_beats_scratch": None,
    }
    row["target_steps"] = _steps(data.steps.get(variant, []))
    rates = [f["adaptive_rate"] for f in data.finals[variant] if "adaptive_rate" in f]
    if rates:  # `lr_schedule: adaptive`: the rate each seed ended at, and the range it moved through
        reached = [rate for r in rates for _, rate, _ in r["history"]]
        row["learning_rate"] = {
            "final_per_seed": [r["rate"] for r in rates],
            "final_mean": float(np.mean([r["rate"] for r in rates])),
            "lowest": min(reached, default=None),
            "highest": max(reached, default=None),
        }
    kept = [f["kept_step"] for f in data.finals[variant] if "kept_step" in f]
    row["kept_steps"] = kept or None  # keep_best: the step each seed's deployed policy is from
    searches = data.auto.get(variant)
    row["auto"] = (
        [
            {"winner": s["winner"], "exploration_steps": s["exploration_steps"]}
            | ({"decision": s["decision"], "rounds": s["rounds"]} if "decision" in s else {})
            for s in searches
        ]
        if searches
        else None
    )
    if untrained is not None and reference is not None and reference > untrained:
        row["fraction_of_reference"] = m.fraction_of_reference(float(values.mean()), untrained, reference)
    if data.variants[variant].learning:
        row["return_at_budget"] = _summary(m.return_at_budget(curves, CONFIDENCE))
        if np.asarray(curves[0][0]).size >= 2:
            row["area_under_curve"] = _summary(m.area_under_curve(curves, CONFIDENCE))
    scratch = data.curves.get("scratch")
    if scratch and variant not in ("scratch", "reference"):
        row["jumpstart"] = _summary(m.jumpstart(curves, scratch, CONFIDENCE))
        row["p_beats_scratch"] = stats.probability_of_improvement(values, finals["scratch"])
    return row


def _train_budget(data: Gathered) -> int | None:
    """The target steps the compared variants trained for (the budget in whole rollouts, less the
    evaluations' reserve with `count_in_budget`): where their curves end."""
    for variant in ("finetune", "scratch", "zeroshot_randomized", "zeroshot_nominal"):
        if variant in data.curves:
            return int(np.asarray(data.curves[variant][0][0])[-1])
    return None


def _steps(per_seed: list[dict[str, int]]) -> dict[str, Any] | None:
    """Target steps of a variant, all seeds together (train, evaluation, other, total) and per seed."""
    if not per_seed:
        return None
    totals: dict[str, Any] = {key: sum(s.get(key, 0) for s in per_seed) for key in (*PURPOSES, "total")}
    totals["max_open"] = max(s.get("max_open", 0) for s in per_seed)
    totals["per_seed"] = per_seed
    return totals


def _comparisons(finals: dict[str, np.ndarray], variants: list[Variant]) -> dict[str, Any]:
    """What each variant declared it is compared with: P(it beats the other) and whether its mean is
    above (`beats`), then whether its mean fell below the other's (`below`: negative transfer)."""
    out: dict[str, Any] = {}
    for v in variants:
        for other, key in v.beats:
            if v.name in finals and other in finals:
                out[f"p_{key}"] = stats.probability_of_improvement(finals[v.name], finals[other])
                out[key] = bool(finals[v.name].mean() > finals[other].mean())
    for v in variants:
        for other, key in v.below:
            if v.name in finals and other in finals:
                out[key] = bool(finals[v.name].mean() < finals[other].mean())
    return out
