"""The experiment report: the result document (`results`) as report.json, report.md, curves.png and
TensorBoard summary series.

Reads only what the stages wrote, so it can be regenerated at any time (`simreal report RUN_DIR`);
`simreal compare` writes the same document for several run directories.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from simreal.analysis import calibration, meta, multitask
from simreal.analysis.plots import plot_curves
from simreal.analysis.results import build_results, gather
from simreal.analysis.tensorboard import write_summary
from simreal.training.engine.artifacts import atomic_write_text
from simreal.training.engine.method import Variant


def _num(x: float | None, fmt: str = ".1f", none: str = "-") -> str:
    return none if x is None else format(x, fmt)


def _fmt(s: dict[str, Any] | None, stat: str = "mean") -> str:
    if s is None:
        return "-"
    low, high = s["ci95"]
    return f"{s[stat]:.1f} ± {s['std']:.1f} [{_num(low)}, {_num(high)}]"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


MIN_SEEDS = 3
"""Fewer seeds than this per variant: the report says its probabilities and intervals are indications."""


def verdicts(doc: dict[str, Any], variants: list[Variant]) -> list[str]:
    """One sentence per comparison the variants declared, agreeing with its own numbers: "beats" only
    when the mean is higher and P(this > other) is above one half, "does NOT beat" only when both say
    so, else "is not clearly better than"; with too few seeds, it says so instead."""
    rows, comparisons = doc["variants"], doc["comparisons"]
    lines = []
    for v in variants:
        for other, key in v.beats:
            if key not in comparisons:
                continue
            p, above = comparisons[f"p_{key}"], comparisons[key]
            seeds = min(rows[v.name]["final_return"]["n"], rows[other]["final_return"]["n"])
            if seeds < MIN_SEEDS:
                verdict = "cannot yet be compared with"
                why = f" (P = {p:.2f} from {seeds} seed{'s' if seeds > 1 else ''}: too few to tell)"
            else:
                verdict = (
                    "beats"
                    if above and p > 0.5
                    else "does NOT beat"
                    if not above and p < 0.5
                    else "is not clearly better than"
                )
                why = f" (P = {p:.2f} over {seeds} seeds; mean {'higher' if above else 'not higher'})"
            lines.append(f"- {rows[v.name]['label'].capitalize()} {verdict} {rows[other]['label']}{why}.")
        for other, key in v.below:
            if comparisons.get(key):
                lines.append(
                    f"- {rows[v.name]['label'].capitalize()} ended BELOW {rows[other]['label']}, where it "
                    "started from: negative transfer."
                )
    return lines


def _fewest_seeds(doc: dict[str, Any]) -> int:
    return min((row["final_return"]["n"] for row in doc["variants"].values()), default=0)


def to_markdown(doc: dict[str, Any], declared: list[Variant] | None = None) -> str:
    """The document as a Markdown page: a variant table, the yardstick, transfer metrics and verdicts
    (`declared`: the variants' declarations, which say what each is compared with)."""
    stat = doc["statistic"]
    lines = [
        f"# Transfer report: {doc['experiment']}",
        "",
        f"Task `{doc['task']}`, target `{doc['target']}`, {doc['algo']}, "
        f"pretraining {doc['pretrain_steps']:,} steps, target budget {doc['target_budget']:,} steps; "
        f"seeds from {', '.join(doc['run_dirs'])}. "
        f"Final return: {stat} ± std across seeds [95% CI: {doc['ci_method']}].",
        "",
        f"| variant | seeds | final return on target ({stat} ± std [95% CI]) | of the reference "
        "| success rate | steps to threshold | jumpstart vs scratch | P(> scratch) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in doc["variants"].values():
        steps = "-" if doc["threshold"] is None else _num(row["steps_to_threshold"], ",.0f", "not reached")
        jump = "-" if row["jumpstart"] is None else f"{row['jumpstart']['mean']:.1f}"
        lines.append(
            f"| {row['label']} | {row['final_return']['n']} | {_fmt(row['final_return'], stat)} "
            f"| {_pct(row['fraction_of_reference'])} | {_fmt(row['success_rate'], stat)} | {steps} "
            f"| {jump} | {_num(row['p_beats_scratch'], '.2f')} |"
        )
    ref = doc["reference"]
    lines += ["", "## The yardstick", ""]
    if doc["reference_return"] is not None:
        where = f" ({', '.join(ref['sources'])})" if ref["sources"] else ""
        lines.append(f"- Reference return **{doc['reference_return']:.1f}**: {ref['note']}{where}.")
    else:
        lines.append(f"- {ref['note']}.")
    if doc["untrained_return"] is not None:
        lines.append(
            f"- Untrained policy: {doc['untrained_return']:.1f} "
            "(scratch's first evaluation, before training)."
        )
    if doc["threshold"] is not None:
        lines.append(
            f"- Threshold {doc['threshold']:.1f}: {doc['threshold_fraction']:.0%} of the way from the "
            "untrained policy to the reference. Steps to it are read from the mean curve across seeds; "
            "scratch's from the reference stage's curve where there is one (scratch is given the chance "
            "to get there)."
        )
    else:
        lines.append(f"- No threshold, so no sample-efficiency ratio: {doc['threshold_note']}.")
    lines.append(f"- Sample efficiency: {doc['sample_efficiency_ratio']['text']}.")
    if "student_sample_efficiency_ratio" in doc:
        lines.append(
            f"- Sample efficiency of the distilled student: {doc['student_sample_efficiency_ratio']['text']}."
        )
    if "calibrated_sample_efficiency_ratio" in doc:
        lines.append(
            "- Sample efficiency of the calibrated policy (calibration counted): "
            f"{doc['calibrated_sample_efficiency_ratio']['text']}."
        )
    variants = doc["variants"]
    learning = {v.name: v.learning for v in declared or []}  # what trained on the target comes last
    trained_last = sorted(variants.items(), key=lambda item: learning.get(item[0], False))
    for name, row in trained_last:
        if name != "reference" and row["fraction_of_reference"] is not None:
            lines.append(
                f"- {row['label'].capitalize()} keeps {_pct(row['fraction_of_reference'])} "
                "of the way from untrained to the reference."
            )
    counted = [(row["label"], row["target_steps"]) for row in doc["variants"].values() if row["target_steps"]]
    if counted:
        lines += [
            "",
            "## Target interaction",
            "",
            "Every step taken on the target, all seeds together (a target may be a robot). Evaluation "
            f"counts against the budget: {'yes' if doc['count_in_budget'] else 'no'}.",
            "",
            "| variant | train | evaluation | other | total | most instances open at once |",
            "|---|---|---|---|---|---|",
        ]
        for label, s in counted:
            lines.append(
                f"| {label} | {s['train']:,} | {s['evaluation']:,} | {s['other']:,} | {s['total']:,} "
                f"| {s['max_open']} |"
            )
    searches = doc["variants"].get("finetune", {}).get("auto")
    if searches:
        lines += [
            "",
            "Fine-tuning chose its settings on the target (`finetune.auto`: a race on paired episodes):",
            "",
        ]
        lines += [_search_line(i, s, doc["train_budget"]) for i, s in enumerate(searches)]
    for row in doc["variants"].values():
        rate = row.get("learning_rate")
        if rate:
            lines += [
                "",
                f"{row['label'].capitalize()} steered its learning rate by each update's KL "
                f"(`lr_schedule: adaptive`): it ended at {rate['final_mean']:.3g} (mean over seeds; per seed "
                f"{', '.join(f'{r:.3g}' for r in rate['final_per_seed'])}), having moved between "
                f"{_num(rate['lowest'], '.3g')} and {_num(rate['highest'], '.3g')} "
                "(TensorBoard: `finetune/learning_rate`).",
            ]
    kept = doc["variants"].get("finetune", {}).get("kept_steps")
    if kept:
        lines += [
            "",
            f"Fine-tuning deployed the best evaluated policy (`keep_best`): from steps {kept} (per seed).",
        ]
    lines += [""]
    lines += verdicts(doc, declared or [])
    if (few := _fewest_seeds(doc)) < MIN_SEEDS:
        lines.append(
            f"- Caution: some variants rest on {few} seed{'s' if few > 1 else ''}; probabilities and "
            f"intervals from fewer than {MIN_SEEDS} seeds are indications, not evidence."
        )
    lines += _distillation_lines(doc.get("distillation"))
    lines += calibration.lines(doc.get("calibration"))
    lines += meta.lines(doc.get("meta_learning"))
    lines += multitask.lines(doc.get("multitask"))
    return "\n".join(lines) + "\n"


def _search_line(i: int, s: dict[str, Any], budget: int) -> str:
    """One seed's race: the winner, by how much and how surely, and what it cost."""
    line = f"- seed {i}: {s['winner']} after {s['exploration_steps']:,} exploration steps of {budget:,}"
    d = s.get("decision")
    if d is None or d["margin"] is None:
        return line + " (nothing to race)" if d is not None else line + " (the rest: the winner)"
    low, high = d["ci95"]
    ci = f" [95% CI {_num(low)}, {_num(high)}]" if low is not None else ""
    rule = (
        f" (the race's rule: a paired mean above {d['drop_rule_se']:g} standard errors)"
        if "drop_rule_se" in d
        else ""
    )
    how = (
        "the race dropped every other candidate"
        if d["separated"]
        else "NOT separated: the race kept the runner-up"
    ) + rule
    return (
        f"{line}; over {d['runner_up']} by {d['margin']:.1f}{ci} on round {d['round']}'s paired episodes, "
        f"P(better) {d['p_better']:.2f}: {how}"
    )


def _distillation_lines(d: dict[str, Any] | None) -> list[str]:
    if d is None:
        return []
    return [
        "",
        "## Distillation",
        "",
        "The teacher (privileged, or reading the state for a camera student) and the student (history-"
        "based, or the camera policy) in the randomized sim (the final evaluation seeds), mean over "
        f"{len(d['seeds'])} seeds: no target steps are spent here. Kept: the "
        "share of the way from an untrained student to the teacher. Parameters: the deployed actor's.",
        "",
        "| untrained | teacher return | student return | kept | distillation steps | wall time "
        "| teacher parameters | student parameters |",
        "|---|---|---|---|---|---|---|---|",
        f"| {_num(d['untrained_source_return'])} | {d['teacher_source_return']:.1f} "
        f"| {d['student_source_return']:.1f} | {_pct(d['student_fraction_of_teacher'])} | {d['steps']:,} "
        f"| {d['wall_s']:.0f} s | {d['teacher_params']:,} | {d['student_params']:,} |",
    ]


def write_results(
    run_dirs: list[Path],
    out_dir: Path,
    name: str,
    statistic: str = "mean",
    fraction: float | None = None,
    separate: bool = False,
) -> tuple[dict[str, Any], str]:
    """Gather `run_dirs` (pooled, or `separate` rows per run), write `<name>.json`, `<name>.md`, the curves
    plot and the TensorBoard summary series into `out_dir`; returns the document and its Markdown."""
    data = gather(run_dirs, separate)
    doc = build_results(data, statistic, fraction)  # type: ignore[arg-type]
    markdown = to_markdown(doc, list(data.variants.values()))
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps(doc, indent=1), out_dir / f"{name}.json")
    atomic_write_text(markdown, out_dir / f"{name}.md")
    plot_curves(data, doc, out_dir / ("curves.png" if name == "report" else f"{name}.png"))
    write_summary(out_dir / "summary", data, doc)
    return doc, markdown


def write_report(run_dir: Path) -> dict[str, Any]:
    """Write report.json, report.md, curves.png and the summary series into `run_dir`; returns the data."""
    return write_results([run_dir], run_dir, "report")[0]
