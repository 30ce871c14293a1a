"""What a panel of random targets says about a recipe: per target fine-tune, scratch and zero-shot, and over
the panel the win rates with bootstrap CIs and where on the shift axes fine-tuning wins or loses.

The unit of the win rates is the target (each target's variants compared by their mean over seeds; a tie
- both at the task's best return, say - counts one half, as in the probability of improvement); the CIs
resample targets (`stats.bootstrap_ci`, seeded). A panel of few targets says little: the document and its
page say so below `MIN_TARGETS`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from simreal import stats
from simreal.training.engine.artifacts import atomic_write_text

VARIANTS = ("finetune", "scratch", "zeroshot_randomized")
CHALLENGERS = {
    "finetune_meta": "finetune",
    "zeroshot_meta": "zeroshot_randomized",
    "finetune_calibrated": "finetune",
    "zeroshot_calibrated": "zeroshot_randomized",
}
"""Variants of other methods that the panel compares with the recipe's own, where every target has them:
the win rate `<challenger>_beats_<baseline>`."""
MIN_TARGETS = 20
"""Fewer targets than this: the panel's rates are indications (defaults are chosen on >= 20)."""


def _rate(wins: np.ndarray) -> dict[str, Any]:
    if wins.size == 0:
        return {"rate": None, "ci95": [None, None], "targets": 0}
    low, high = (
        stats.bootstrap_ci(wins.astype(float), "mean", rng=stats.seeded(None))
        if wins.size > 1
        else (None, None)
    )
    return {
        "rate": float(wins.mean()),
        "ci95": [low, high],
        "targets": int(wins.size),
        "ties": int((wins == 0.5).sum()),
    }


def _wins(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per target: 1 where `a` is higher, 0.5 where they tie, 0 where `b` is higher."""
    return (a > b) + 0.5 * np.isclose(a, b, rtol=0.0, atol=1e-9)


def summarize(targets: list[dict[str, Any]]) -> dict[str, Any]:
    """The panel document from its targets (each: name, shifts, and per variant the per-seed finals)."""
    rows = [t for t in targets if all(v in t["returns"] for v in VARIANTS)]
    mean = {v: np.array([np.mean(t["returns"][v]) for t in rows]) for v in VARIANTS}
    beats_scratch = _wins(mean["finetune"], mean["scratch"])
    beats_zeroshot = _wins(mean["finetune"], mean["zeroshot_randomized"])
    by_axis = {}
    for axis in sorted({s["axis"] for t in rows for s in t["shifts"]}):
        where = np.array([next(s["where"] for s in t["shifts"] if s["axis"] == axis) for t in rows])
        by_axis[axis] = {
            place: {
                "finetune_beats_scratch": _rate(beats_scratch[where == place]),
                "finetune_beats_zeroshot": _rate(beats_zeroshot[where == place]),
            }
            for place in ("inside", "edge", "beyond")
            if (where == place).any()
        }
    challengers = {c: b for c, b in CHALLENGERS.items() if rows and all(c in t["returns"] for t in rows)}
    extra = {
        f"{c}_beats_{b}": _rate(_wins(*(np.array([np.mean(t["returns"][v]) for t in rows]) for v in (c, b))))
        for c, b in challengers.items()
    }
    doc: dict[str, Any] = {
        "schema": "simreal-panel-v1",
        "targets": targets,
        "finished": len(rows),
        "win_rates": {
            "finetune_beats_scratch": _rate(beats_scratch),
            "finetune_beats_zeroshot": _rate(beats_zeroshot),
            **extra,
        },
        "mean_return": {
            v: float(np.mean([np.mean(t["returns"][v]) for t in rows])) if len(rows) else None
            for v in (*VARIANTS, *challengers)
        },
        "by_axis": by_axis,
        "ci_method": stats.CI_METHOD.replace("over seeds", "over targets"),
        "caveat": None
        if len(rows) >= MIN_TARGETS
        else f"{len(rows)} targets: too few to choose defaults on (at least {MIN_TARGETS} wanted)",
    }
    return doc


def write_panel(out: Path, doc: dict[str, Any]) -> None:
    """`panel.json`, `panel.md` and `panel.png` into `out`."""
    atomic_write_text(json.dumps(doc, indent=1), out / "panel.json")
    atomic_write_text(to_markdown(doc), out / "panel.md")
    _plot(doc, out / "panel.png")


def _pct(rate: dict[str, Any]) -> str:
    if rate["rate"] is None:
        return "-"
    low, high = rate["ci95"]
    ci = f" [{100 * low:.0f}%, {100 * high:.0f}%]" if low is not None else ""
    ties = f", {rate['ties']} tied" if rate.get("ties") else ""
    return f"{100 * rate['rate']:.0f}%{ci} of {rate['targets']}{ties}"


def to_markdown(doc: dict[str, Any]) -> str:
    rates = doc["win_rates"]
    lines = [
        "# Panel of random targets",
        "",
        f"{doc['finished']} targets finished. Win rates (each target's mean over seeds, a tie counting "
        f"one half; 95% CI: {doc['ci_method']}):",
        "",
        f"- fine-tune beats scratch: {_pct(rates['finetune_beats_scratch'])}",
        f"- fine-tune beats zero-shot: {_pct(rates['finetune_beats_zeroshot'])}",
        *(
            f"- {key.replace('_beats_', ' beats ')}: {_pct(rate)}"
            for key, rate in rates.items()
            if key.count("_") > 2
        ),
        "",
    ]
    if doc["caveat"]:
        lines += [f"Caution: {doc['caveat']}.", ""]
    extra = [v for v in CHALLENGERS if v in doc["mean_return"]]
    lines += [
        "| target | fine-tune | scratch | zero-shot | "
        + "".join(f"{v} | " for v in extra)
        + "beyond the pretraining range |",
        "|---|---|---|---|" + "---|" * len(extra) + "---|",
    ]
    for t in doc["targets"]:
        r = t["returns"]
        cells = " | ".join(f"{np.mean(r[v]):.1f}" if v in r else "-" for v in (*VARIANTS, *extra))
        beyond = ", ".join(f"{s['axis']} {s['value']:.3g}" for s in t["shifts"] if s["where"] == "beyond")
        lines.append(f"| {t['name']} | {cells} | {beyond or '-'} |")
    lines += [
        "",
        "## Where fine-tuning wins or loses, per axis",
        "",
        "| axis | inside the range | at an edge | beyond it |",
        "|---|---|---|---|",
    ]
    for axis, places in doc["by_axis"].items():
        rates = [
            _pct(places[p]["finetune_beats_scratch"]) if p in places else "-"
            for p in ("inside", "edge", "beyond")
        ]
        lines.append(f"| {axis} | {' | '.join(rates)} |")
    lines += [
        "",
        "(per axis: the rate at which fine-tune beats scratch on the targets where that axis lies there)",
    ]
    return "\n".join(lines) + "\n"


def _plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [t for t in doc["targets"] if all(v in t["returns"] for v in VARIANTS)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    outside = [sum(s["outside"] for s in t["shifts"]) for t in rows]
    for ax, other, title in (
        (axes[0], "scratch", "fine-tune - scratch"),
        (axes[1], "zeroshot_randomized", "fine-tune - zero-shot"),
    ):
        gap = [np.mean(t["returns"]["finetune"]) - np.mean(t["returns"][other]) for t in rows]
        ax.scatter(outside, gap, c=["tab:green" if g > 0 else "tab:red" for g in gap])
        ax.axhline(0.0, color="gray", linewidth=1)
        ax.set_xlabel("how far outside the pretraining ranges (sum over axes)")
        ax.set_ylabel(f"{title} (mean over seeds)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
