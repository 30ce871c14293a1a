"""`algo.vec_env: subproc`: the source sims' envs step in their own processes, with the same results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from stable_baselines3.common.vec_env import SubprocVecEnv
from tiny import set_args

from simreal.cli import main
from simreal.config import load_config
from simreal.schema import ConfigError
from simreal.training.engine.artifacts import load_policy

CPU = torch.device("cpu")


def _experiment(tmp_path: Path, vec_env: str) -> Path:
    """A user's task (a Gymnasium env the project does not ship, from a task file) with 2 envs."""
    task = {
        "env": "InvertedDoublePendulum-v5",
        "randomization": {"params": [{"param": "body_mass", "dist": "uniform", "low": 0.8, "high": 1.2}]},
        "source_effects": [{"type": "observation_noise", "std": [0.0, 0.01]}],
        "targets": {"heavy": {"physics": [{"param": "body_mass", "value": 1.5}]}},
    }
    (tmp_path / "tasks").mkdir(parents=True, exist_ok=True)
    (tmp_path / "tasks" / "vec_pendulum.yaml").write_text(yaml.safe_dump(task))
    data = {
        "experiment": "mine",
        "task": "tasks/vec_pendulum.yaml",
        "target": "heavy",
        "seeds": [0],
        "algo": {"name": "PPO", "n_envs": 2, "vec_env": vec_env},
        "pretrain": {"timesteps": 128},
        "finetune": {"timesteps": 128},
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_subproc_pretraining_gives_the_same_policy_as_in_process_envs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[int] = []
    real_init = SubprocVecEnv.__init__

    def counting_init(self: SubprocVecEnv, env_fns: list[Any], *args: Any, **kwargs: Any) -> None:
        opened.append(len(env_fns))
        real_init(self, env_fns, *args, **kwargs)

    monkeypatch.setattr(SubprocVecEnv, "__init__", counting_init)
    weights = {}
    for kind in ("dummy", "subproc"):
        config = _experiment(tmp_path / kind, kind)
        args = ["pretrain", str(config), *set_args(tmp_path / kind / "runs", "workers=1", reference=False)]
        assert main(args) == 0
        art = load_policy(tmp_path / kind / "runs/mine/pretrain_randomized/seed0/policy.pt", CPU)
        weights[kind] = art.states["policy"]
        assert opened == ([] if kind == "dummy" else [2, 2])  # randomized and nominal, 2 processes each
    assert weights["dummy"].keys() == weights["subproc"].keys()
    for key, value in weights["dummy"].items():  # same seeds, same draws: the same training
        assert torch.equal(value, weights["subproc"][key]), key


def test_subproc_with_adr_is_refused(tmp_path: Path) -> None:
    config = _experiment(tmp_path, "subproc")
    task = tmp_path / "tasks" / "vec_pendulum.yaml"
    data = yaml.safe_load(task.read_text())
    data["randomization"]["adr"] = {"expand_above": 100, "shrink_below": 10}
    task.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="algo.vec_env: subproc envs cannot share randomization.adr"):
        load_config(config)
