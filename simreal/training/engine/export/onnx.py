"""Exports of a state policy artifact: ONNX or safetensors, each with a JSON description beside it.

The exported function is the *deterministic* policy exactly as SB3's ``predict(deterministic=True)``
computes it on normalized observations, with the observation normalization (VecNormalize's: clip 10,
epsilon 1e-8, in float64 as numpy does it) folded in front, so a deployer feeds raw observations:

- PPO, A2C, TRPO: the Gaussian mean (tanh-squashed first with gSDE's ``squash_output``), then clipped to
  the action bounds, or rescaled to them when the policy squashes.
- SAC, TQC: ``tanh`` of the actor's mean, rescaled from [-1, 1] to the action bounds.
- TD3, DDPG: the actor's (tanh-ended) action, rescaled to the action bounds.

The JSON beside the file (``policy.onnx`` -> ``policy.onnx.json``) carries what the graph cannot: the
spaces, the normalization statistics, the ``observation`` config (with ``action_history: k`` the deployer
must append its last k actions to every observation), the algorithm config and provenance.

Example:
    >>> export_onnx("runs/quickstart/finetune/seed0/policy.pt", "policy.onnx")  # doctest: +SKIP
    (PosixPath('policy.onnx'), 2.4e-07)
"""

from __future__ import annotations

import datetime
import hashlib
import importlib
import importlib.metadata
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Literal, TypeAlias

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.distributions import DiagGaussianDistribution, StateDependentNoiseDistribution
from stable_baselines3.common.policies import BaseModel, BasePolicy
from stable_baselines3.common.running_mean_std import RunningMeanStd
from torch import nn

from simreal.training.engine.artifacts import ArtifactError, SpacesEnv, atomic_write_text, load_policy
from simreal.training.engine.artifacts import space_from as artifact_space
from simreal.training.engine.evaluation import CLIP_OBS, EPSILON, normalize

Format: TypeAlias = Literal["onnx", "safetensors"]
FORMATS: tuple[Format, ...] = ("onnx", "safetensors")
EXPORT_FORMAT = "simreal-export-v1"
OPSET = 17
VERIFY_TOLERANCE = 1e-4  # max |ONNX - SB3| allowed on the export's own check, in action units
_EXTRA = "pip install 'simreal[export]'"

# How each algorithm's deterministic action is computed (see the module docstring).
POLICY_KINDS: dict[str, str] = {
    "PPO": "gaussian",
    "A2C": "gaussian",
    "TRPO": "gaussian",
    "SAC": "squashed_gaussian",
    "TQC": "squashed_gaussian",
    "TD3": "deterministic",
    "DDPG": "deterministic",
}


class ExportError(ValueError):
    """A policy that cannot be exported, or a missing optional package (one line, naming the fix)."""


def require(module: str, what: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportError(f"{what} needs the package {module!r}: {_EXTRA}") from None


class DeterministicPolicy(nn.Module):
    """Raw observation -> normalized observation -> deterministic action, as one traceable module.

    Input float32 ``[batch, *obs_shape]``, output float32 ``[batch, *action_shape]``.
    """

    obs_mean: torch.Tensor
    obs_std: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor

    def __init__(self, algo: str, policy: BasePolicy, obs_rms: RunningMeanStd | None) -> None:
        super().__init__()
        if algo not in POLICY_KINDS:
            raise ExportError(f"algo {algo}: not exportable (supported: {', '.join(POLICY_KINDS)})")
        space = policy.action_space
        if not isinstance(space, gym.spaces.Box):
            raise ExportError(f"action space {space}: only Box action spaces are exportable")
        if not isinstance(policy.observation_space, gym.spaces.Box):
            raise ExportError(f"observation space {policy.observation_space}: only Box is exportable")
        self.kind = POLICY_KINDS[algo]
        dist = getattr(policy, "action_dist", None)
        if self.kind == "gaussian" and not isinstance(
            dist, DiagGaussianDistribution | StateDependentNoiseDistribution
        ):
            raise ExportError(f"{algo} action distribution {type(dist).__name__}: not exportable")
        self.policy = policy
        self.squash_mean = isinstance(dist, StateDependentNoiseDistribution) and dist.bijector is not None
        self.rescale = bool(policy.squash_output)  # else clip, as BasePolicy.predict does
        self.obs_rms = obs_rms
        self.normalized = obs_rms is not None
        mean = np.zeros(policy.observation_space.shape) if obs_rms is None else obs_rms.mean
        var = np.ones(policy.observation_space.shape) if obs_rms is None else obs_rms.var
        self.register_buffer("obs_mean", torch.as_tensor(np.asarray(mean, dtype=np.float64)))
        self.register_buffer("obs_std", torch.as_tensor(np.sqrt(np.asarray(var, dtype=np.float64) + EPSILON)))
        self.register_buffer("low", torch.as_tensor(space.low, dtype=torch.float32))
        self.register_buffer("high", torch.as_tensor(space.high, dtype=torch.float32))

    def _raw_action(self, obs: torch.Tensor) -> torch.Tensor:
        policy: Any = self.policy
        if self.kind == "gaussian":
            features = BaseModel.extract_features(policy, obs, policy.pi_features_extractor)
            mean = policy.action_net(policy.mlp_extractor.forward_actor(features))
            return torch.tanh(mean) if self.squash_mean else mean
        if self.kind == "squashed_gaussian":
            mean, _, _ = policy.actor.get_action_dist_params(obs)
            return torch.tanh(mean)
        out: torch.Tensor = policy.actor(obs)
        return out

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.normalized:  # in float64 like numpy's (obs - mean) / sqrt(var + eps), then float32
            scaled = (obs.to(torch.float64) - self.obs_mean) / self.obs_std
            obs = torch.clamp(scaled, -CLIP_OBS, CLIP_OBS).to(torch.float32)
        action = self._raw_action(obs.to(torch.float32))
        action = action.reshape(obs.shape[0], *self.low.shape)
        if self.rescale:
            return self.low + 0.5 * (action + 1.0) * (self.high - self.low)
        return torch.minimum(torch.maximum(action, self.low), self.high)


class WithHistory(nn.Module):
    """A distilled student's policy with the history window as its own input: `(obs, history) -> action`,
    `history` of shape (batch, steps, observation + action), oldest first (see the sidecar)."""

    def __init__(self, policy: DeterministicPolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, obs: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        return self.policy(torch.cat([obs, history.flatten(1)], dim=1))


def _history(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The student's history layout (None for other policies)."""
    layout = meta.get("history")
    return layout if isinstance(layout, dict) and layout.get("history_steps") else None


def space_from(desc: dict[str, Any]) -> gym.spaces.Box:
    """Rebuild a Box from `artifacts.describe_space`'s JSON (other spaces are not exportable)."""
    if desc.get("type") != "Box":
        raise ExportError(f"space {desc.get('type')}: only Box spaces are exportable")
    box = artifact_space(desc)
    assert isinstance(box, gym.spaces.Box)
    return box


def rebuild(model_path: str | Path) -> tuple[BaseAlgorithm, RunningMeanStd | None, dict[str, Any]]:
    """The SB3 model, normalization statistics and metadata of a policy artifact, on the CPU."""
    from simreal.training.engine.sb3.loading import load_model

    meta = load_policy(model_path).meta
    space_from(meta["observation_space"])
    space_from(meta["action_space"])
    model, rms = load_model(Path(model_path), SpacesEnv.of(meta), torch.device("cpu"), seed=0)
    model.policy.set_training_mode(False)
    return model, rms, meta


def sidecar_path(path: str | Path) -> Path:
    """The JSON beside an export: ``policy.onnx`` -> ``policy.onnx.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _task_layout(layout: dict[str, Any]) -> dict[str, Any]:
    """How a multi-task policy's input and output relate to the robot's own (see
    `simreal.simulation.multitask.Padded`)."""
    tasks, index = int(layout.get("tasks", 0)), layout.get("index")
    ident = (
        f", then a one-hot task id of {tasks} components with 1 at position {index}"
        if tasks and index is not None
        else (f", then {tasks} zeros (no task id)" if tasks else "")
    )
    return {
        **layout,
        "observation": f"the robot's observation zero-padded to {layout['obs_dim']} components{ident}",
        "action": (
            "the first n components, n = the robot's own action dimension, the rest padding to ignore; "
            "each bounded one from [-1, 1] to the robot's bounds: low + (a + 1) / 2 * (high - low) "
            "(unbounded ones as they are)"
        ),
    }


def _observation(meta: dict[str, Any]) -> dict[str, Any]:
    """The `observation` config, and with an action history how the deployer assembles the input."""
    cfg = dict(meta.get("observation", {}))
    task_layout = cfg.pop("layout", None)
    if task_layout:  # a multi-task policy: the robot's own observation and action inside a padded layout
        cfg["task_layout"] = _task_layout(task_layout)
    history, act = int(cfg.get("action_history", 0)), meta["action_space"]
    window = _history(meta)
    if window is not None:
        cfg["history"] = window
    if history:
        act_dim = int(np.prod(act["shape"]))
        obs_dim = (
            window["current_observation"][1] if window else int(np.prod(meta["observation_space"]["shape"]))
        )
        cfg["env_obs_dim"] = obs_dim - history * act_dim
        cfg["layout"] = "[env observation, a(t-k), ..., a(t-1)], k = action_history, oldest action first"
        cfg["neutral_action"] = np.clip(np.zeros(act_dim), act["low"], act["high"]).tolist()
        cfg["before_first_action"] = "every history slot holds neutral_action"
    return cfg


def describe_export(
    model_path: Path, out: Path, fmt: Format, meta: dict[str, Any], module: DeterministicPolicy
) -> dict[str, Any]:
    """The JSON beside an export: spaces, normalization, observation layout, algo and provenance."""
    obs_shape, act, rms = meta["observation_space"]["shape"], meta["action_space"], module.obs_rms
    normalization = None
    if rms is not None:
        normalization = {
            "mean": np.asarray(rms.mean, dtype=np.float64).ravel().tolist(),
            "var": np.asarray(rms.var, dtype=np.float64).ravel().tolist(),
            "count": float(rms.count),
            "epsilon": EPSILON,
            "clip": CLIP_OBS,
            "formula": "clip((obs - mean) / sqrt(var + epsilon), -clip, clip), in float64, then float32",
            "in_graph": fmt == "onnx",
        }
    window = _history(meta) if fmt == "onnx" else None
    inputs: dict[str, Any] = {
        "name": "obs",
        "shape": ["batch", *obs_shape],
        "dtype": "float32",
        "raw": fmt == "onnx",
    }
    if window is not None:  # the student's graph takes the current observation and its history apart
        steps, per = window["history_steps"], window["per_step"]
        inputs["shape"] = ["batch", window["current_observation"][1]]
        inputs["history"] = {
            "name": "history",
            "shape": ["batch", steps, per["observation"] + per["action"]],
            "dtype": "float32",
            "raw": True,
            "fill": window,
        }
    return {
        "format": EXPORT_FORMAT,
        "export": fmt,
        "file": out.name,
        "policy": "deterministic",
        "input": inputs,
        "output": {"name": "action", "shape": ["batch", *act["shape"]], "dtype": "float32"},
        "action_postprocess": "rescale [-1, 1] to [low, high]" if module.rescale else "clip to [low, high]",
        "observation_space": meta["observation_space"],
        "action_space": act,
        "normalization": normalization,
        "observation": _observation(meta),
        "algo": meta["algo"],
        "provenance": {
            "source": str(model_path),
            "source_sha256": _sha256(model_path),
            **{k: meta.get(k) for k in ("task", "env_id", "variant", "seed", "num_timesteps")},
            "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "versions": {p: _version(p) for p in ("simreal", "torch", "stable-baselines3", "onnx")},
        },
    }


def strict_json(data: Any) -> str:
    """JSON any parser reads: infinite bounds (e.g. of an observation Box) as "inf"/"-inf" strings."""

    def fix(x: Any) -> Any:
        if isinstance(x, float) and not np.isfinite(x):
            return None if np.isnan(x) else ("inf" if x > 0 else "-inf")
        if isinstance(x, dict):
            return {k: fix(v) for k, v in x.items()}
        return [fix(v) for v in x] if isinstance(x, list) else x

    return json.dumps(fix(data), indent=1, allow_nan=False)


def temp_beside(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def _verify_onnx(
    path: Path, model: BaseAlgorithm, rms: RunningMeanStd | None, window: dict[str, Any] | None, n: int = 64
) -> float:
    """Max |onnxruntime - SB3 predict(deterministic=True)| on `n` random raw observations (a student's
    split into the current observation and its history window, as its graph takes them)."""
    ort = require("onnxruntime", "ONNX export")
    shape = model.observation_space.shape or ()
    rng = np.random.default_rng(0)
    center = np.zeros(shape) if rms is None else rms.mean
    scale = np.ones(shape) if rms is None else np.sqrt(rms.var + EPSILON)
    obs = (center + scale * rng.normal(0.0, 2.0, size=(n, *shape))).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    if window is None:
        got = session.run(None, {"obs": obs})[0]
    else:
        current = window["current_observation"][1]
        history = obs[:, current:].reshape(n, window["history_steps"], -1)
        got = session.run(None, {"obs": obs[:, :current], "history": history})[0]
    want, _ = model.predict(normalize(obs, rms), deterministic=True)
    return float(np.max(np.abs(got - want)))


def export_onnx(model_path: str | Path, out: str | Path) -> tuple[Path, float]:
    """Export to ONNX (legacy TorchScript exporter, offline); returns the path and its verified error."""
    require("onnx", "ONNX export")
    model, rms, meta = rebuild(model_path)
    module = DeterministicPolicy(meta["algo"]["name"], model.policy, rms).eval()
    window = _history(meta)
    out = Path(out)
    tmp = temp_beside(out)
    try:
        dummy = torch.zeros((1, *(model.observation_space.shape or ())), dtype=torch.float32)
        graph: nn.Module = module
        args: tuple[torch.Tensor, ...] = (dummy,)
        names, axes = ["obs"], {"obs": {0: "batch"}, "action": {0: "batch"}}
        if window is not None:
            current = window["current_observation"][1]
            graph = WithHistory(module).eval()
            args = (dummy[:, :current], dummy[:, current:].reshape(1, window["history_steps"], -1))
            names, axes = ["obs", "history"], {**axes, "history": {0: "batch"}}
        with torch.no_grad(), warnings.catch_warnings():
            # Only the notices that the TorchScript exporter is legacy; any other warning still shows.
            warnings.filterwarnings("ignore", ".*legacy TorchScript-based ONNX export", DeprecationWarning)
            warnings.filterwarnings("ignore", "The feature will be removed", DeprecationWarning)
            # A student's GRU: traced at batch 1, verified below at batch 64 (the warnings say to check that).
            warnings.filterwarnings("ignore", "Exporting a model to ONNX with a batch_size other than 1")
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(
                graph,
                args,
                str(tmp),
                dynamo=False,  # the dynamo exporter needs onnxscript; the TorchScript one is enough here
                input_names=names,
                output_names=["action"],
                dynamic_axes=axes,
                opset_version=OPSET,
            )
        error = _verify_onnx(tmp, model, rms, window)
        if not error <= VERIFY_TOLERANCE:
            raise ExportError(f"{out}: ONNX output differs from SB3's predict by {error:.2e}")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    info = describe_export(Path(model_path), out, "onnx", meta, module)
    info["verification"] = {"samples": 64, "max_abs_error": error, "against": "SB3 predict(deterministic)"}
    info["exporter"] = {"function": "torch.onnx.export", "dynamo": False, "opset_version": OPSET}
    atomic_write_text(strict_json(info), sidecar_path(out))
    return out, error


def export_safetensors(model_path: str | Path, out: str | Path) -> Path:
    """The policy's state dict (``policy.<name>``) and normalization (``obs_rms.mean``/``.var``, float64)."""
    st = require("safetensors.torch", "safetensors export")
    model, rms, meta = rebuild(model_path)  # checks that the weights fit the declared architecture
    module = DeterministicPolicy(meta["algo"]["name"], model.policy, rms)
    # Clones: safetensors refuses tensors that share memory (e.g. a shared features extractor's).
    tensors = {f"policy.{k}": v.detach().cpu().clone() for k, v in model.policy.state_dict().items()}
    if rms is not None:
        tensors["obs_rms.mean"] = torch.as_tensor(np.asarray(rms.mean, dtype=np.float64))
        tensors["obs_rms.var"] = torch.as_tensor(np.asarray(rms.var, dtype=np.float64))
    out = Path(out)
    info = describe_export(Path(model_path), out, "safetensors", meta, module)
    tmp = temp_beside(out)
    try:
        st.save_file(tensors, str(tmp), metadata={"simreal": strict_json(info)})
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    atomic_write_text(strict_json(info), sidecar_path(out))
    return out


def load_safetensors(
    path: str | Path,
) -> tuple[dict[str, torch.Tensor], RunningMeanStd | None, dict[str, Any]]:
    """Inverse of `export_safetensors`: (policy state dict, normalization statistics, description)."""
    st = require("safetensors", "safetensors export")
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: file not found")
    state: dict[str, torch.Tensor] = {}
    with st.safe_open(str(path), framework="pt") as fh:
        info = json.loads((fh.metadata() or {}).get("simreal", "{}"))
        for key in fh.keys():
            state[key] = fh.get_tensor(key)
    rms = None
    if "obs_rms.mean" in state:
        rms = RunningMeanStd(shape=tuple(state["obs_rms.mean"].shape))
        rms.mean = state.pop("obs_rms.mean").numpy()
        rms.var = state.pop("obs_rms.var").numpy()
        rms.count = float(info["normalization"]["count"])
    policy = {k.removeprefix("policy."): v for k, v in state.items() if k.startswith("policy.")}
    return policy, rms, info
