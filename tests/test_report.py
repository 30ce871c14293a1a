"""The report's sentences agree with its own numbers, and say when they rest on too little data."""

from __future__ import annotations

from typing import Any

from simreal.analysis.report import verdicts
from simreal.training.engine.method import Variant

RANDOMIZED = Variant("zeroshot_randomized", "zero-shot randomized", beats=(("zeroshot_nominal", "rand"),))
NOMINAL = Variant("zeroshot_nominal", "zero-shot nominal")


def _doc(seeds: int, p: float, above: bool) -> dict[str, Any]:
    row = {"final_return": {"n": seeds}}
    return {
        "variants": {
            "zeroshot_randomized": {**row, "label": "zero-shot randomized"},
            "zeroshot_nominal": {**row, "label": "zero-shot nominal"},
        },
        "comparisons": {"p_rand": p, "rand": above},
    }


def test_a_verdict_never_contradicts_its_probability() -> None:
    # the Reacher case: mean higher, but P(randomized > nominal) = 0.44 - not "beats"
    [line] = verdicts(_doc(5, 0.44, True), [RANDOMIZED, NOMINAL])
    assert "is not clearly better than zero-shot nominal" in line and "P = 0.44" in line
    [line] = verdicts(_doc(5, 0.9, True), [RANDOMIZED, NOMINAL])
    assert "beats zero-shot nominal" in line
    [line] = verdicts(_doc(5, 0.1, False), [RANDOMIZED, NOMINAL])
    assert "does NOT beat" in line


def test_one_seed_is_too_few_to_call() -> None:
    [line] = verdicts(_doc(1, 1.0, True), [RANDOMIZED, NOMINAL])
    assert "cannot yet be compared" in line and "from 1 seed: too few to tell" in line
