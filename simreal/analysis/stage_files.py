"""A stage's per-seed JSON files across run directories (the report's calibration and meta-learning
sections read theirs)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any


def per_seed(run_dirs: list[Path], stage: str, name: str) -> list[dict[str, Any]]:
    """`<run>/<stage>/seed<N>/<name>` of every seed, in seed order, each with its `seed`; a seed found in
    several run directories counts once (the first)."""
    found: dict[int, dict[str, Any]] = {}
    for run_dir in run_dirs:
        folder = run_dir / stage
        for path in sorted(folder.glob(f"seed*/{name}")) if folder.is_dir() else []:
            seed = re.fullmatch(r"seed(\d+)", path.parent.name)
            if seed is not None and int(seed.group(1)) not in found:
                found[int(seed.group(1))] = {"seed": int(seed.group(1)), **json.loads(path.read_text())}
    return [found[s] for s in sorted(found)]
