"""How often `finetune.auto` picks the candidate that is best at the end of the budget.

`auto`'s panel (`--auto`) raced candidates that differ in one fine-tuning key (`--key`, e.g. lr_factor);
each candidate was also run alone to the end on the same panel (`--fixed VALUE=PANEL_DIR`, run with
`simreal panel ... --reuse` so every panel has the same targets and pretrained policies). Per seed and
target: auto's pick (from its `auto.json`), each candidate's final return, and whether the pick ends
within `--tolerance` of the best; "where it matters" leaves out the seed-targets on which every
candidate ends within the tolerance.

Usage:
    python benchmarks/auto_accuracy.py --auto runs/qs_panel_auto --key lr_factor \\
        --fixed 0.1=runs/qs_panel_f01 --fixed 0.3=runs/qs_panel_f03 --fixed 1.0=runs/qs_panel_f10
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import mean
from typing import Any


def _targets(panel: Path) -> dict[str, Any]:
    return {t["name"]: t for t in json.loads((panel / "panel.json").read_text())["targets"]}


def _label(value: object) -> str:
    """A candidate value as the table names it (0.1 and "0.1" alike)."""
    try:
        return f"{float(value):g}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--auto", type=Path, required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--fixed", action="append", required=True, metavar="VALUE=PANEL_DIR")
    parser.add_argument("--tolerance", type=float, default=10.0)
    args = parser.parse_args()
    fixed = {_label(v): _targets(Path(d)) for v, d in (f.split("=", 1) for f in args.fixed)}
    auto = _targets(args.auto)
    picks: dict[str, int] = dict.fromkeys(fixed, 0)
    rows = []
    for name, target in sorted(auto.items()):
        for seed, end in enumerate(target["returns"]["finetune"]):
            record = json.loads(
                (args.auto / "runs" / name / "finetune" / f"seed{seed}" / "auto.json").read_text()
            )
            winner = record["winner"]
            # a candidate that sets other keys (`init: scratch`) is named by them
            pick = (
                _label(winner[args.key])
                if args.key in winner
                else ",".join(f"{k}={v}" for k, v in winner.items())
            )
            picks[pick] = picks.get(pick, 0) + 1
            ends = {v: panel[name]["returns"]["finetune"][seed] for v, panel in fixed.items()}
            best = {v for v, r in ends.items() if r >= max(ends.values()) - args.tolerance}
            rows.append((name, seed, pick, ends, best, end, record["decision"].get("separated", False)))
    matters = [r for r in rows if len(r[4]) < len(fixed)]
    print(f"picks: {picks}")
    right = sum(r[2] in r[4] for r in rows)
    print(f"pick within {args.tolerance:g} of the best at the end: {right} of {len(rows)}")
    print(f"where the choice matters: {sum(r[2] in r[4] for r in matters)} of {len(matters)}")
    print(f"decisions the race called separated: {sum(r[6] for r in rows)} of {len(rows)}")
    print(
        f"mean final return: auto {mean(r[5] for r in rows):.1f}; "
        + ", ".join(f"{v}: {mean(r[3][v] for r in rows):.1f}" for v in fixed)
        + f"; oracle {mean(max(r[3].values()) for r in rows):.1f}"
    )
    for name, seed, pick, ends, _, end, _ in matters:
        print(f"  {name} seed {seed}: picked {pick}, ends {ends}, auto ended at {end:.0f}")


if __name__ == "__main__":
    main()
