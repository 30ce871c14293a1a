"""`simreal compare` on hand-made run directories whose numbers are known in advance.

Scratch's mean curve rises 0, 25, 50, 75, 100 over 0..4000 target steps and fine-tune's is
50, 90, 100, 100, 100; seeds differ by a symmetric offset, so the means are exact. With fraction 0.9 the
threshold is 0 + 0.9 * (100 - 0) = 90: fine-tune reaches it at 1000, scratch at 3600, ratio 3.6.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from simreal.analysis.compare import compare, gather
from simreal.cli import main
from simreal.config import dump_config, load_config

STEPS = [0, 1000, 2000, 3000, 4000]
MEANS = {
    "scratch": np.array([0.0, 25.0, 50.0, 75.0, 100.0]),
    "finetune": np.array([50.0, 90.0, 100.0, 100.0, 100.0]),
}
OFFSETS = {"scratch": np.array([0.0, 5.0, 5.0, 5.0, 0.0]), "finetune": np.array([2.0, 0.0, 0.0, 0.0, 0.0])}
FINALS = {"finetune": (101.0, 99.0), "scratch": (90.0, 95.0), "zeroshot_randomized": (40.0, 60.0)}


def _write_seed(stage: Path, returns: np.ndarray, final: float) -> None:
    stage.mkdir(parents=True)
    curve = [
        {"step": s, "mean_return": float(r), "std_return": 0.0, "success_rate": None}
        for s, r in zip(STEPS if len(returns) == len(STEPS) else [0, STEPS[-1]], returns, strict=True)
    ]
    (stage / "curve.json").write_text(json.dumps(curve))
    final_data = {"returns": [final], "lengths": [1], "successes": [None], "mean_return": final}
    (stage / "final.json").write_text(json.dumps({**final_data, "success_rate": None}))


def make_run(root: Path, name: str, seeds: list[int], overrides: list[str] | None = None) -> Path:
    """A run directory with fine-tune, scratch and zero-shot seeds; seed k gets offset sign (-1)^k."""
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
            _write_seed(run / variant / f"seed{seed}", returns, FINALS[variant][seed % 2])
        zs = FINALS["zeroshot_randomized"][seed % 2]
        _write_seed(run / "zeroshot_randomized" / f"seed{seed}", np.array([zs, zs]), zs)
    return run


def test_known_answer_table(tmp_path: Path) -> None:
    run = make_run(tmp_path, "a", [0, 1])  # config.yaml lists seed 0 only: seeds are discovered
    result = compare([run])
    c = result.data
    assert c["threshold"] == pytest.approx(90.0)
    ft, sc, zs = (c["variants"][v] for v in ("finetune", "scratch", "zeroshot_randomized"))
    assert ft["final_return"]["n"] == sc["final_return"]["n"] == 2
    assert ft["final_return"]["mean"] == pytest.approx(100.0)
    low, high = ft["final_return"]["ci95"]
    assert 99.0 <= low <= 100.0 <= high <= 101.0
    assert ft["steps_to_threshold"] == pytest.approx(1000.0)
    assert sc["steps_to_threshold"] == pytest.approx(3600.0)
    assert zs["steps_to_threshold"] is None  # flat at 40/60 < 90
    ratio = ft["sample_efficiency_ratio"]
    assert ratio["estimate"] == pytest.approx(3.6) and ratio["kind"] == "exact"
    # Scratch's mean at 3000 resamples to 70, 75 or 80: crossings 3666.7, 3600, 3500.
    assert 3.5 - 1e-9 <= ratio["ci95"][0] <= 3.6 <= ratio["ci95"][1] <= 3666.67 / 1000 + 1e-6
    assert ft["jumpstart"]["mean"] == pytest.approx(50.0)  # (52 - 0, 48 - 0) paired by seed
    assert zs["jumpstart"]["mean"] == pytest.approx(50.0)  # (40 - 0, 60 - 0)
    assert ft["p_beats_scratch"] == 1.0 and zs["p_beats_scratch"] == 0.0
    assert sc["jumpstart"] is None and sc["p_beats_scratch"] is None
    md = (run / "compare.md").read_text()
    assert "| fine-tune (randomized -> target) | 2 | 100.0 [" in md and "3.60x [" in md
    assert json.loads((run / "compare.json").read_text()) == json.loads(json.dumps(c))
    png = (run / "compare.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 1000


def test_threshold_fraction_and_floor(tmp_path: Path) -> None:
    """Threshold 50: scratch reaches it at 2000; fine-tune at step 0, floored to its first eval (1000)."""
    run = make_run(tmp_path, "a", [0, 1])
    c = compare([run], tmp_path / "out", threshold_fraction=0.5).data
    assert c["threshold"] == pytest.approx(50.0)
    ratio = c["variants"]["finetune"]["sample_efficiency_ratio"]
    assert ratio["estimate"] == pytest.approx(2.0) and ratio["finetune_floored"]
    assert (tmp_path / "out" / "compare.md").exists() and not (run / "compare.md").exists()
    with pytest.raises(ValueError, match="threshold-fraction"):
        compare([run], threshold_fraction=1.5)


def test_merge_two_dirs_and_skip_unfinished(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", [0, 1])
    b = make_run(tmp_path, "b", [2, 3])
    (b / "scratch" / "seed9").mkdir()  # interrupted: no curve.json/final.json
    data = gather([a, b])
    assert data.seeds["scratch"] == [0, 1, 2, 3] and data.seeds["zeroshot_randomized"] == [0, 1, 2, 3]
    c = compare([a, b], tmp_path / "out", statistic="iqm").data
    assert c["statistic"] == "iqm" and c["variants"]["finetune"]["final_return"]["n"] == 4
    assert c["variants"]["finetune"]["sample_efficiency_ratio"]["estimate"] == pytest.approx(3.6)
    assert c["variants"]["scratch"]["final_return"]["iqm"] == pytest.approx(92.5)


def test_mismatch_and_duplicates_are_errors(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", [0, 1])
    other_target = make_run(tmp_path, "b", [2], ["target=extrapolate"])
    other_budget = make_run(tmp_path, "c", [3], ["finetune.timesteps=8000"])
    same_seeds = make_run(tmp_path, "d", [1])
    with pytest.raises(ValueError, match=r"target differs \(latency vs extrapolate\)"):
        gather([a, other_target])
    with pytest.raises(ValueError, match="target budget"):
        gather([a, other_budget])
    with pytest.raises(ValueError, match="seed 1 found in both"):
        gather([a, same_seeds])
    with pytest.raises(FileNotFoundError, match="no config.yaml"):
        gather([tmp_path])


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = make_run(tmp_path, "a", [0, 1])
    b = make_run(tmp_path, "b", [2, 3])
    out = tmp_path / "merged"
    assert main(["compare", str(a), str(b), "--out", str(out), "--statistic", "iqm"]) == 0
    assert "3.60x" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"compare.md", "compare.json", "compare.png"}
    bad = make_run(tmp_path, "bad", [4], ["target=extrapolate"])
    assert main(["compare", str(a), str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("simreal: error: cannot merge") and "\n" not in err
