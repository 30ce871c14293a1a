"""Transfer methods as plugins: the packaged methods' declarations drive the run, and a user's method from
a test module (`user_methods.LinearProbe`) runs through `simreal run` without touching the package."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tiny import set_args

from simreal.cli import main
from simreal.config import default_config_path, load_config
from simreal.schema import ConfigError, load_yaml
from simreal.training.engine import plan
from simreal.training.engine.artifacts import load_policy
from simreal.training.engine.context import Context
from simreal.training.engine.pipeline import worker_count
from simreal.training.engine.preflight import preflight

CPU = torch.device("cpu")
PROBE = "user_methods:LinearProbe"


def _config(tmp_path: Path, **extra: object) -> Path:
    data = {**load_yaml(default_config_path()), **extra}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_packaged_methods_declare_the_quickstarts_stages() -> None:
    stages = plan(load_config())
    names = [s.name for s in stages.stages]
    assert names == [
        "pretrain_randomized",
        "pretrain_nominal",
        "finetune",
        "scratch",
        "zeroshot_randomized",
        "zeroshot_nominal",
        "reference",
    ]
    on_target = {"finetune", "scratch", "zeroshot_randomized", "zeroshot_nominal", "reference"}
    assert stages.target_stages == on_target
    # the largest set of one seed's stages that wait for none of each other
    assert stages.width() == 5
    ctx = Context(load_config(overrides=["workers=0"]), Path("unused"), CPU)
    assert worker_count(ctx) >= 1


def test_disabled_stages_and_their_dependents_leave_the_plan() -> None:
    cfg = load_config(overrides=["pretrain.nominal_baseline=false", "scratch=false", "reference=false"])
    names = [s.name for s in plan(cfg).stages]
    assert names == ["pretrain_randomized", "finetune", "zeroshot_randomized"]


def test_user_method_runs_through_simreal_run(tmp_path: Path) -> None:
    config = _config(tmp_path, methods=[PROBE], linear_probe={"lr_factor": 0.5})
    args = ["run", str(config), *set_args(tmp_path, "reference=false", "pretrain.nominal_baseline=false")]
    assert main([*args, "--seeds", "0,1", "--workers", "2"]) == 0
    run = tmp_path / "quickstart"
    report = json.loads((run / "report.json").read_text())
    row = report["variants"]["linear_probe"]
    assert row["label"] == "linear probe (last layer only)" and row["final_return"]["n"] == 2
    assert "return_at_budget" in row  # declared as learning on the target: a curve
    assert "p_probe_beats_finetune" in report["comparisons"]
    curve = json.loads((run / "linear_probe/seed0/curve.json").read_text())
    assert [p["step"] for p in curve] == [0, 64, 128]
    events = EventAccumulator(str(run / "linear_probe/seed0"))
    events.Reload()
    assert [e.step for e in events.Scalars("target/mean_return")] == [0, 64, 128]
    # what the probe trained: only the layer after the (frozen) hidden ones moved
    source = load_policy(run / "pretrain_randomized/seed0/policy.pt").states["policy"]
    probe = load_policy(run / "linear_probe/seed0/policy.pt").states["policy"]
    hidden = "mlp_extractor.policy_net.0.weight"
    assert torch.equal(source[hidden], probe[hidden])
    assert not torch.equal(source["action_net.weight"], probe["action_net.weight"])
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["methods"] == [PROBE] and saved["linear_probe"] == {"lr_factor": 0.5}
    assert main(["report", str(run)]) == 0  # the report reads the declarations from the run directory
    assert main(["compare", str(run), "--out", str(tmp_path / "cmp")]) == 0
    compared = json.loads((tmp_path / "cmp/compare.json").read_text())
    assert compared["variants"]["linear_probe"]["label"] == row["label"]
    assert "linear probe" in (tmp_path / "cmp/compare.md").read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"methods": ["no_such_module:Probe"]}, "methods.0: cannot import module 'no_such_module'"),
        ({"methods": ["user_methods:NOT_A_METHOD"]}, "methods.0: 'user_methods:NOT_A_METHOD' is not a"),
        ({"methods": [PROBE], "linear_probe": {"lr_factr": 2}}, "linear_probe: lr_factr: unknown key"),
        ({"methods": [PROBE], "linear_probe": {"lr_factor": -1}}, "linear_probe: lr_factor:"),
        ({"linear_probe": {"lr_factor": 1}}, "linear_probe: unknown key"),
    ],
)
def test_bad_methods_fail_at_config_load(tmp_path: Path, extra: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(_config(tmp_path, **extra))
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("method", "message"),
    [
        ("user_methods:Clash", "methods.0 (user_methods:Clash): variant 'finetune' is declared by method"),
        ("user_methods:Loop", "stages ping -> pong -> ping form a cycle"),
        ("user_methods:Orphan", "stage 'orphan' comes after 'pretrain_imaginary', which no method declares"),
    ],
)
def test_bad_method_graphs_fail_before_anything_is_written(
    tmp_path: Path, method: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = load_config(_config(tmp_path, methods=[method]))
    with pytest.raises(ConfigError) as err:
        plan(cfg)
    assert message in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError):
        preflight(cfg, CPU)
    config = _config(tmp_path, methods=[method], output_dir=str(tmp_path / "runs"))
    assert main(["run", str(config), "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_the_methods_guide_example_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/guides/methods.md: its method file and its experiment file, as written, through `simreal run`."""
    import re
    import sys

    guide = Path(__file__).resolve().parents[1] / "docs" / "guides" / "methods.md"
    blocks = re.findall(r"```(?:yaml|python)\n(.*?)```", guide.read_text(), flags=re.S)
    files = {m.group(1): b for b in blocks if (m := re.match(r"# (\S+\.(?:py|yaml))", b.splitlines()[0]))}
    assert set(files) == {"my_pkg/methods.py", "my_experiment.yaml"}
    (tmp_path / "my_pkg").mkdir()
    (tmp_path / "my_pkg" / "__init__.py").write_text("")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        tiny = set_args(tmp_path / "runs", "reference=false", "pretrain.nominal_baseline=false", "workers=1")
        assert main(["run", "my_experiment.yaml", *tiny, "--seeds", "0"]) == 0
        report = json.loads((tmp_path / "runs" / "quickstart_probe" / "report.json").read_text())
        assert report["variants"]["linear_probe"]["label"] == "linear probe (last layer only)"
    finally:
        for module in [m for m in sys.modules if m == "my_pkg" or m.startswith("my_pkg.")]:
            del sys.modules[module]
