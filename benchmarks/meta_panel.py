"""Meta-learned against randomized initialization at equal simulation steps, on a panel of held-out targets.

Two `simreal panel` runs on the same targets (the same task and `--seed`): the meta config (randomized
pretraining for part of the simulation steps, Reptile for the rest; `finetune_meta`, `zeroshot_meta`) and
the base config (randomized pretraining for all of them; `finetune`, `zeroshot_randomized`), at one
fine-tuning budget. Per target the two are compared by their mean over seeds; over the panel, the win
rate with its bootstrap CI over targets. Writes `meta_panel.json` under `--out` and prints a markdown
table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from simreal import stats
from simreal.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def _panel(config: str, out: Path, targets: int, seed: int, overrides: list[str]) -> dict[str, Any]:
    if not (out / "panel.json").is_file():
        args = ["panel", config, "--targets", str(targets), "--seed", str(seed), "--out", str(out)]
        for item in overrides:
            args += ["--set", item]
        code = subprocess.call([sys.executable, "-m", "simreal.cli", *args])
        if code != 0:
            raise SystemExit(f"simreal {' '.join(args)} failed ({code})")
    doc: dict[str, Any] = json.loads((out / "panel.json").read_text())
    return doc


def _means(doc: dict[str, Any], variant: str) -> dict[str, float]:
    return {
        t["name"]: float(np.mean(t["returns"][variant])) for t in doc["targets"] if variant in t["returns"]
    }


def _compare(a: dict[str, float], b: dict[str, float]) -> dict[str, Any]:
    names = sorted(set(a) & set(b))
    wins = np.array([1.0 if a[n] > b[n] else 0.5 if np.isclose(a[n], b[n]) else 0.0 for n in names])
    low, high = stats.bootstrap_ci(wins, "mean", rng=stats.seeded(None)) if len(wins) > 1 else (None, None)
    return {
        "targets": len(names),
        "win_rate": float(wins.mean()),
        "ci95": [low, high],
        "per_target": {n: [a[n], b[n]] for n in names},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meta", default=str(ROOT / "configs" / "inverted_pendulum_meta.yaml"))
    parser.add_argument("--base", default=str(ROOT / "configs" / "quickstart.yaml"))
    parser.add_argument("--targets", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=int, default=1024, help="fine-tuning target steps")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--out", default="runs/meta_panel")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    overrides = [f"finetune.timesteps={args.budget}", f"seeds=[{args.seeds}]"]
    meta = _panel(args.meta, out / "meta", args.targets, args.seed, overrides)
    # both fine-tune alike: the base with the meta config's frozen depth (its Reptile inner loop's)
    frozen = load_config(Path(args.meta)).finetune.freeze_layers
    base = _panel(
        args.base, out / "base", args.targets, args.seed, [*overrides, f"finetune.freeze_layers={frozen}"]
    )
    result = {
        "budget": args.budget,
        "seeds": args.seeds,
        "finetune_meta_vs_finetune": _compare(_means(meta, "finetune_meta"), _means(base, "finetune")),
        "zeroshot_meta_vs_zeroshot": _compare(
            _means(meta, "zeroshot_meta"), _means(base, "zeroshot_randomized")
        ),
        "mean_return": {
            "finetune_meta": meta["mean_return"].get("finetune_meta"),
            "finetune (base)": base["mean_return"]["finetune"],
            "zeroshot_meta": meta["mean_return"].get("zeroshot_meta"),
            "zeroshot_randomized (base)": base["mean_return"]["zeroshot_randomized"],
            "scratch": base["mean_return"]["scratch"],
            "finetune (meta run's shorter randomized pretraining)": meta["mean_return"]["finetune"],
        },
    }
    (out / "meta_panel.json").write_text(json.dumps(result, indent=1))
    print("| target | finetune_meta | finetune (equal sim steps) | zeroshot_meta | zeroshot_randomized |")
    print("|---|---|---|---|---|")
    ft, zs = (
        result["finetune_meta_vs_finetune"]["per_target"],
        result["zeroshot_meta_vs_zeroshot"]["per_target"],
    )
    for name in ft:
        print(f"| {name} | {ft[name][0]:.1f} | {ft[name][1]:.1f} | {zs[name][0]:.1f} | {zs[name][1]:.1f} |")
    for key in ("finetune_meta_vs_finetune", "zeroshot_meta_vs_zeroshot"):
        r = result[key]
        print(f"- {key}: wins on {r['win_rate']:.0%} of {r['targets']} targets, 95% CI {r['ci95']}")


if __name__ == "__main__":
    main()
