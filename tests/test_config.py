"""Config errors: one line, naming the key path and what is allowed, before any training."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from simreal.config import default_config_path, load_config
from simreal.schema import ConfigError


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _base() -> dict:
    return yaml.safe_load(default_config_path().read_text())


def test_embedded_default_is_valid() -> None:
    cfg = load_config()
    assert cfg.experiment == "quickstart" and len(cfg.seeds) >= 3
    assert cfg.finetune_lr == pytest.approx(cfg.algo.pretrain_lr * cfg.finetune.lr_factor)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["finetune"].update(learning_rat=1e-4), "finetune.learning_rat: unknown key (allowed: "),
        (lambda d: d.update(seeds="zero"), "seeds: Input should be a valid list"),
        (lambda d: d.pop("pretrain"), "pretrain: Field required"),
        (
            lambda d: d["pretrain"].update(timesteps=-5),
            "pretrain.timesteps: Input should be greater than or equal to 1",
        ),
        (lambda d: d.update(task="pendulumx"), "task: unknown task 'pendulumx' (allowed: "),
        (lambda d: d.update(target="moon"), "target: unknown target 'moon' of InvertedPendulum (allowed: "),
        (lambda d: d["algo"].update(name="PPOX"), "algo.name: unknown algorithm 'PPOX' (allowed: A2C"),
        (
            lambda d: d["algo"]["kwargs"].update(n_step=3),
            "algo.kwargs.n_step: not an argument of PPO (allowed: ",
        ),
        (lambda d: d["algo"]["kwargs"].update(learning_rate=3), "kwargs.learning_rate: set by the framework"),
        (lambda d: d["algo"].update(activation="swish"), "activation: unknown 'swish' (allowed: tanh"),
        (
            lambda d: d["finetune"].update(obs_norm="maybe"),
            "finetune.obs_norm: Input should be 'keep', 'reestimate'",
        ),
        (lambda d: d.update(experiment="a/b"), "experiment: must be a plain directory name"),
        (lambda d: d.update(device="tpu"), "device: Input should be 'auto', 'cpu' or 'cuda'"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, edit, message: str) -> None:
    data = _base()
    edit(data)
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, data))
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(str(tmp_path / "exp.yaml"))
    assert message in text, text


def test_overrides_go_through_the_schema(tmp_path: Path) -> None:
    cfg = load_config(None, ["finetune.timesteps=1000", "seeds=[4,5]", "algo.kwargs.n_steps=128"])
    assert cfg.finetune.timesteps == 1000 and cfg.seeds == [4, 5] and cfg.algo.kwargs["n_steps"] == 128
    with pytest.raises(ConfigError, match=re.escape("finetune.timestep: unknown key")):
        load_config(None, ["finetune.timestep=1000"])


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)


@pytest.mark.parametrize("path", sorted((default_config_path().parent).glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_is_valid(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.finetune.timesteps >= cfg.evaluation.every_steps


def test_freezing_more_layers_than_the_network_has_fails_before_training() -> None:
    with pytest.raises(ConfigError, match=re.escape("finetune.freeze_layers: 5 exceeds the 2 hidden layers")):
        load_config(None, ["finetune.freeze_layers=5"])
    with pytest.raises(ConfigError, match="exceeds the 1 hidden layers"):
        load_config(None, ["finetune.freeze_layers=2", "algo.net_arch=[16]"])
    assert load_config(None, ["finetune.freeze_layers=1", "algo.net_arch=[16]"]).finetune.freeze_layers == 1


def test_input_paths_are_relative_to_the_file_that_names_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task file and a weights file resolve against the experiment file; output_dir stays as given
    (relative to the working directory)."""
    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "w.pt").write_bytes(b"")
    data = yaml.safe_load(default_config_path().read_text())
    data.update(pixels=True, perception={"backbone": "small_cnn", "weights": "w.pt"}, output_dir="out")
    (folder / "exp.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path)
    cfg = load_config(folder / "exp.yaml")
    assert cfg.perception is not None and cfg.perception.weights == str(folder / "w.pt")
    assert cfg.output_dir == "out"
