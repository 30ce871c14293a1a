"""The yardstick and the one result schema, on hand-made run directories whose numbers are known.

Budget 4,000 target steps on the grid 0, 1000, ..., 4000; the reference stage (scratch for 40,000 steps)
is evaluated every 1,000 steps. Seeds differ by symmetric offsets, so means are exact. Untrained = 0
(every scratch-like curve starts at 0), so with fraction 0.9 the threshold is 0.9 x the reference.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from simreal.analysis.compare import compare
from simreal.analysis.report import write_report
from simreal.analysis.results import gather
from simreal.cli import main
from simreal.config import dump_config, load_config

STEPS = [0, 1000, 2000, 3000, 4000]
REF_STEPS = list(range(0, 40_001, 1000))
RISING = np.minimum(np.array(REF_STEPS) / 100.0, 100.0)  # 0 -> 100 at 10,000 steps, then flat
MEANS = {
    "scratch": np.array([0.0, 10.0, 20.0, 30.0, 40.0]),
    "finetune": np.array([50.0, 90.0, 100.0, 100.0, 100.0]),
}
OFFSETS = {"scratch": np.array([0.0, 5.0, 5.0, 5.0, 0.0]), "finetune": np.array([2.0, 0.0, 0.0, 0.0, 0.0])}
FINALS = {"finetune": (101.0, 99.0), "scratch": (38.0, 42.0), "zeroshot_randomized": (40.0, 60.0)}


def _write_seed(stage: Path, steps: list[int], returns: np.ndarray, final: float) -> None:
    stage.mkdir(parents=True)
    curve = [
        {"step": s, "mean_return": float(r), "std_return": 0.0, "success_rate": None}
        for s, r in zip(steps, returns, strict=True)
    ]
    (stage / "curve.json").write_text(json.dumps(curve))
    final_data = {"returns": [final], "lengths": [1], "successes": [None], "mean_return": final}
    (stage / "final.json").write_text(json.dumps({**final_data, "success_rate": None}))


def make_run(
    root: Path,
    name: str,
    seeds: list[int],
    overrides: list[str] | None = None,
    reference: np.ndarray | None = RISING,
) -> Path:
    """A run directory with fine-tune, scratch, zero-shot and reference seeds; seed k gets sign (-1)^k."""
    run = root / name
    cfg = load_config(
        None, [f"experiment={name}", "finetune.timesteps=4000", "seeds=[0]", *(overrides or [])]
    )
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(dump_config(cfg))
    for seed in seeds:
        sign = 1.0 if seed % 2 == 0 else -1.0
        for variant in ("finetune", "scratch"):
            returns = MEANS[variant] + sign * OFFSETS[variant]
            _write_seed(run / variant / f"seed{seed}", STEPS, returns, FINALS[variant][seed % 2])
        zs = FINALS["zeroshot_randomized"][seed % 2]
        _write_seed(run / "zeroshot_randomized" / f"seed{seed}", STEPS, np.full(5, zs), zs)
        if reference is not None:
            wobble = np.where((np.array(REF_STEPS) > 0) & (reference < reference.max()), 5.0, 0.0)
            ref = reference + sign * wobble
            _write_seed(run / "reference" / f"seed{seed}", REF_STEPS, ref, float(ref[-1]))
    return run


def test_scratch_reaches_the_threshold_only_in_the_reference_stage_exact_ratio(tmp_path: Path) -> None:
    run = make_run(tmp_path, "a", [0, 1])  # config.yaml lists seed 0 only: seeds are discovered
    c = compare([run]).data
    assert c["untrained_return"] == 0.0 and c["reference_return"] == pytest.approx(100.0)
    assert c["reference"]["kind"] == "reference_stage" and c["threshold"] == pytest.approx(90.0)
    ratio = c["sample_efficiency_ratio"]
    assert ratio["kind"] == "exact" and ratio["scratch_curves"] == "reference"
    assert ratio["finetune_steps"] == pytest.approx(1000.0) and ratio["scratch_steps"] == pytest.approx(
        9000.0
    )
    assert ratio["estimate"] == pytest.approx(9.0)
    assert ratio["text"].startswith(
        "fine-tune reaches 90% of the reference in 1,000 target steps; scratch in 9,000: ratio 9.00x"
    )
    ft, sc, zs = (c["variants"][v] for v in ("finetune", "scratch", "zeroshot_randomized"))
    assert sc["steps_to_threshold"] is None  # within its own 4,000 steps scratch never gets there
    assert ft["final_return"]["mean"] == pytest.approx(100.0) and ft["final_return"]["n"] == 2
    assert zs["fraction_of_reference"] == pytest.approx(0.5)  # (40 + 60) / 2 of 100
    assert ft["jumpstart"]["mean"] == pytest.approx(50.0)  # (52 - 0, 48 - 0) paired by seed
    assert ft["p_beats_scratch"] == 1.0 and sc["jumpstart"] is None
    md = (run / "compare.md").read_text()
    assert "Reference return **100.0**: scratch on the target for 40,000 steps" in md
    assert "Zero-shot randomized keeps 50%" in md
    assert (run / "compare.png").read_bytes().startswith(b"\x89PNG")


def test_scratch_never_reaching_success_return_gives_a_lower_bound(tmp_path: Path) -> None:
    slow = np.minimum(np.array(REF_STEPS) / 500.0, 80.0)  # 80 at 40,000 steps: never 90
    run = make_run(tmp_path, "a", [0, 1], ["evaluation.success_return=100"], reference=slow)
    c = compare([run]).data
    assert c["reference"]["kind"] == "success_return" and c["threshold"] == pytest.approx(90.0)
    ratio = c["sample_efficiency_ratio"]
    assert ratio["kind"] == "lower_bound" and ratio["scratch_steps"] is None
    assert ratio["estimate"] == pytest.approx(40_000 / 1000)
    assert "scratch does not within 40,000: ratio >= 40.00x" in ratio["text"]


def test_a_reference_that_never_improves_gives_no_ratio_and_says_why(tmp_path: Path) -> None:
    run = make_run(tmp_path, "a", [0, 1], reference=np.zeros(len(REF_STEPS)))
    c = compare([run]).data
    assert c["threshold"] is None and c["sample_efficiency_ratio"]["estimate"] is None
    assert "does not improve on the untrained policy" in c["threshold_note"]
    assert c["sample_efficiency_ratio"]["text"].startswith("no ratio: the reference return 0")
    assert "No threshold, so no sample-efficiency ratio" in (run / "compare.md").read_text()


def test_report_json_is_compare_json_of_the_one_run(tmp_path: Path) -> None:
    run = make_run(tmp_path, "a", [0, 1])
    report = write_report(run)
    compare([run])
    assert (run / "report.json").read_text() == (run / "compare.json").read_text()
    assert report["schema"] == "simreal-results-v1"
    for key in ("reference_return", "threshold", "sample_efficiency_ratio", "ci_method"):
        assert key in report
    assert report["ci_method"].startswith("percentile bootstrap")


def test_summary_series_are_the_mean_of_the_per_seed_curves(tmp_path: Path) -> None:
    run = make_run(tmp_path, "a", [0, 1, 2])
    write_report(run)
    cases = [("finetune", "return", STEPS), ("scratch", "return", STEPS), ("reference", "return", STEPS)]
    for variant, tag, steps in [*cases, ("reference", "reference_return", REF_STEPS)]:
        acc = EventAccumulator(str(run / "summary" / variant))
        acc.Reload()
        curves = [json.loads((run / variant / f"seed{s}" / "curve.json").read_text()) for s in (0, 1, 2)]
        expected = np.mean([[p["mean_return"] for p in c if p["step"] in steps] for c in curves], axis=0)
        events = acc.Scalars(f"summary/{tag}")
        assert [e.step for e in events] == steps
        np.testing.assert_allclose([e.value for e in events], expected, rtol=1e-6)
        lows = [e.value for e in acc.Scalars(f"summary/{tag}_low")]
        highs = [e.value for e in acc.Scalars(f"summary/{tag}_high")]
        assert all(lo <= v + 1e-4 and v <= hi + 1e-4 for lo, v, hi in zip(lows, expected, highs, strict=True))
    layout = EventAccumulator(str(run / "summary" / "layout"))
    layout.Reload()
    assert "custom_scalars__config__" in layout.Tags()["tensors"]


def test_threshold_fraction(tmp_path: Path) -> None:
    """Threshold 50: the reference reaches it at 5,000; fine-tune at step 0, floored to 1,000."""
    run = make_run(tmp_path, "a", [0, 1])
    c = compare([run], tmp_path / "out", threshold_fraction=0.5).data
    assert c["threshold"] == pytest.approx(50.0)
    ratio = c["sample_efficiency_ratio"]
    assert (
        ratio["estimate"] == pytest.approx(5.0)
        and ratio["finetune_floored"]
        and ratio["kind"] == "lower_bound"
    )
    assert (tmp_path / "out" / "compare.md").exists() and not (run / "compare.md").exists()
    with pytest.raises(ValueError, match="threshold-fraction"):
        compare([run], threshold_fraction=1.5)


def test_merge_two_dirs_and_skip_unfinished(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", [0, 1])
    b = make_run(tmp_path, "b", [2, 3])
    (b / "scratch" / "seed9").mkdir()  # interrupted: no curve.json/final.json
    data = gather([a, b])
    assert [Path(s).name for s in data.sources["scratch"]] == ["seed0", "seed1", "seed2", "seed3"]
    c = compare([a, b], tmp_path / "out", statistic="iqm").data
    assert c["statistic"] == "iqm" and c["variants"]["finetune"]["final_return"]["n"] == 4
    assert c["sample_efficiency_ratio"]["estimate"] == pytest.approx(9.0)
    assert c["variants"]["scratch"]["final_return"]["iqm"] == pytest.approx(40.0)


def test_mismatch_and_duplicates_are_errors(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", [0, 1])
    other_target = make_run(tmp_path, "b", [2], ["target=extrapolate"])
    other_budget = make_run(tmp_path, "c", [3], ["finetune.timesteps=8000"])
    same_seeds = make_run(tmp_path, "d", [1])
    with pytest.raises(ValueError, match=r"target differs \(heavy vs extrapolate\)"):
        gather([a, other_target])
    with pytest.raises(ValueError, match="target budget"):
        gather([a, other_budget])
    with pytest.raises(ValueError, match="seed 1 found in both"):
        gather([a, same_seeds])
    with pytest.raises(FileNotFoundError, match="no config.yaml"):
        gather([tmp_path])


def test_runs_with_other_settings_are_not_pooled_but_can_stand_side_by_side(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", [0, 1])
    frozen = make_run(tmp_path, "frozen", [2, 3], ["finetune.freeze_layers=1"])
    with pytest.raises(ValueError, match=r"differ in finetune\.freeze_layers \(0 vs 1\).*--separate"):
        gather([a, frozen])
    side = compare([a, frozen], tmp_path / "side", separate=True).data
    assert side["variants"]["finetune"]["final_return"]["n"] == 2
    row = side["variants"]["finetune@frozen"]
    assert row["label"] == "fine-tune (randomized -> target) [frozen]" and row["final_return"]["n"] == 2
    assert row["jumpstart"] is not None  # measured against the first run's scratch, like every row
    assert "p_finetune_beats_scratch@frozen" in side["comparisons"]
    # where and how wide a run ran does not change what its seeds measure: those runs pool
    wide = make_run(tmp_path, "wide", [4], ["workers=2", "device=cpu"])
    assert gather([a, wide]).finals["finetune"][2]["mean_return"] == FINALS["finetune"][0]


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = make_run(tmp_path, "a", [0, 1])
    b = make_run(tmp_path, "b", [2, 3])
    out = tmp_path / "merged"
    assert main(["compare", str(a), str(b), "--out", str(out), "--statistic", "iqm"]) == 0
    assert "9.00x" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"compare.md", "compare.json", "compare.png", "summary"}
    bad = make_run(tmp_path, "bad", [4], ["target=extrapolate"])
    assert main(["compare", str(a), str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("simreal: error: cannot merge") and "\n" not in err
