"""Exported policies compute what SB3's `predict(deterministic=True)` computes on normalized observations.

Tiny PPO, SAC and TD3 policies are trained for a few hundred steps on `simreal/InvertedPendulum-v0`,
saved as artifacts (with hand-made, non-trivial normalization statistics) and exported; onnxruntime's
outputs are compared with the in-memory model on random raw observations, clip range included.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.running_mean_std import RunningMeanStd

import simreal  # noqa: F401 - registers the simreal/ ids
from simreal.cli import main
from simreal.config import load_config
from simreal.simulation.observation import ActionHistory
from simreal.training.engine.artifacts import SpacesEnv, load_policy, save_policy
from simreal.training.engine.evaluation import normalize
from simreal.training.engine.export import export_policy, load_safetensors, sidecar_path
from simreal.training.engine.sb3.loading import build_model

ort = pytest.importorskip("onnxruntime", reason="needs the export extra: pip install 'simreal[export]'")

ROOT = Path(__file__).resolve().parents[1]
ALGO_KWARGS = {
    "PPO": ["algo.kwargs.n_steps=64", "algo.kwargs.batch_size=32", "algo.kwargs.n_epochs=1"],
    "SAC": ["algo.kwargs.learning_starts=150", "algo.kwargs.buffer_size=500", "algo.kwargs.batch_size=32"],
    "TD3": ["algo.kwargs.learning_starts=150", "algo.kwargs.buffer_size=500", "algo.kwargs.batch_size=32"],
}
HISTORY = {"PPO": 1, "SAC": 0, "TD3": 0}  # PPO's policy also sees its last action


def _train(algo: str) -> tuple[BaseAlgorithm, dict[str, Any]]:
    overrides = [f"algo.name={algo}", "algo.kwargs={}", "algo.net_arch=[16]", *ALGO_KWARGS[algo]]
    cfg = load_config(None, [*overrides, f"observation.action_history={HISTORY[algo]}"])
    env: gym.Env[Any, Any] = gym.make("simreal/InvertedPendulum-v0")
    if HISTORY[algo]:
        env = ActionHistory(env, HISTORY[algo])
    model = build_model(cfg.algo, env, cfg.algo.pretrain_lr, torch.device("cpu"), seed=0)
    model.learn(200)
    meta = {
        "variant": "test",
        "seed": 0,
        "env_id": "simreal/InvertedPendulum-v0",
        "task": cfg.task.name,
        "algo": cfg.algo.model_dump(mode="json"),
        "observation": cfg.observation.model_dump(mode="json"),
    }
    return model, meta


@pytest.fixture(scope="module")
def trained() -> dict[str, tuple[BaseAlgorithm, dict[str, Any]]]:
    return {algo: _train(algo) for algo in ALGO_KWARGS}


def _rms(dim: int) -> RunningMeanStd:
    rms = RunningMeanStd(shape=(dim,))
    rms.mean = np.linspace(-0.5, 1.0, dim)
    rms.var = np.linspace(0.01, 4.0, dim)
    rms.count = 1234.0
    return rms


def _observations(rms: RunningMeanStd | None, dim: int, n: int = 100) -> np.ndarray:
    """Raw observations around the statistics; every tenth far out, so the clip at 10 is exercised."""
    rng = np.random.default_rng(1)
    center = np.zeros(dim) if rms is None else rms.mean
    scale = np.ones(dim) if rms is None else np.sqrt(rms.var)
    z = rng.normal(0.0, 2.0, size=(n, dim))
    z[::10] *= 20.0
    return (center + scale * z).astype(np.float32)


def _no_infinity(name: str) -> None:
    raise AssertionError(f"non-standard JSON constant {name}")


CASES = [("PPO", False), ("PPO", True), ("SAC", False), ("SAC", True), ("TD3", True)]


@pytest.mark.parametrize(("algo", "with_rms"), CASES)
def test_onnx_matches_sb3_predict(tmp_path: Path, trained: dict[str, Any], algo: str, with_rms: bool) -> None:
    model, meta = trained[algo]
    dim = model.observation_space.shape[0]
    rms = _rms(dim) if with_rms else None
    save_policy(model, rms, meta, tmp_path / "policy.pt")
    out = export_policy(tmp_path / "policy.pt", "onnx")
    assert out == tmp_path / "policy.onnx"

    obs = _observations(rms, dim)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(["action"], {"obs": obs})[0]
    want, _ = model.predict(normalize(obs, rms), deterministic=True)
    assert got.shape == want.shape == (100, 1) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    space = model.action_space
    assert np.all(got >= space.low) and np.all(got <= space.high)

    info = json.loads(sidecar_path(out).read_text(), parse_constant=_no_infinity)  # strict JSON
    assert info["observation_space"]["low"][:4] == ["-inf"] * 4  # the pendulum state is unbounded
    assert info["algo"]["name"] == algo and info["observation"]["action_history"] == HISTORY[algo]
    assert info["verification"]["max_abs_error"] <= 1e-5
    if HISTORY[algo]:
        assert info["observation"]["env_obs_dim"] == 4 and info["observation"]["neutral_action"] == [0.0]
    assert info["exporter"]["dynamo"] is False and info["provenance"]["variant"] == "test"
    if with_rms:
        assert info["normalization"]["mean"] == pytest.approx(rms.mean.tolist())
        assert info["normalization"]["clip"] == 10.0 and info["normalization"]["in_graph"]
    else:
        assert info["normalization"] is None


def test_safetensors_round_trip(tmp_path: Path, trained: dict[str, Any]) -> None:
    model, meta = trained["SAC"]
    rms = _rms(4)
    save_policy(model, rms, meta, tmp_path / "policy.pt")
    out = export_policy(tmp_path / "policy.pt", "safetensors", tmp_path / "deploy" / "sac.safetensors")
    state, loaded_rms, info = load_safetensors(out)
    art = load_policy(tmp_path / "policy.pt")
    assert state.keys() == art.states["policy"].keys()
    assert all(torch.equal(state[k], art.states["policy"][k]) for k in state)
    assert loaded_rms is not None and loaded_rms.count == 1234.0
    np.testing.assert_array_equal(loaded_rms.mean, rms.mean)
    np.testing.assert_array_equal(loaded_rms.var, rms.var)
    assert info == json.loads(sidecar_path(out).read_text()) and info["export"] == "safetensors"

    fresh = build_model(model_config(meta), SpacesEnv.of(info), 1e-3, torch.device("cpu"), seed=1)
    fresh.policy.load_state_dict(state)
    obs = normalize(_observations(rms, 4), loaded_rms)
    np.testing.assert_array_equal(
        fresh.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0]
    )


def model_config(meta: dict[str, Any]) -> Any:
    from simreal.config import AlgoConfig

    return AlgoConfig.model_validate(meta["algo"])


def test_run_exported_without_torch(tmp_path: Path, trained: dict[str, Any]) -> None:
    """The standalone runner, with torch and simreal made unimportable, fills in the action history."""
    model, meta = trained["PPO"]
    rms = _rms(5)
    save_policy(model, rms, meta, tmp_path / "policy.pt")
    assert main(["export", str(tmp_path / "policy.pt"), "--format", "onnx"]) == 0
    env_obs = [0.01, -0.02, 0.03, 0.1]
    script = ROOT / "benchmarks" / "run_exported.py"
    argv = [str(script), str(tmp_path / "policy.onnx"), "--obs", *map(str, env_obs)]
    code = (
        "import runpy, sys; sys.modules['torch'] = sys.modules['simreal'] = None; "
        f"sys.argv = {argv!r}; runpy.run_path({str(script)!r}, run_name='__main__')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    action = json.loads(done.stdout)["action"]
    obs = np.array([[*env_obs, 0.0]], dtype=np.float32)  # neutral last action: 0 within [-3, 3]
    want, _ = model.predict(normalize(obs, rms), deterministic=True)
    np.testing.assert_allclose(action, want[0], atol=1e-5)


def test_missing_package_is_one_line(
    tmp_path: Path,
    trained: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model, meta = trained["TD3"]
    save_policy(model, None, meta, tmp_path / "policy.pt")
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert main(["export", str(tmp_path / "policy.pt"), "--format", "onnx"]) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install 'simreal[export]'" in err and "\n" not in err
    assert not (tmp_path / "policy.onnx").exists()
