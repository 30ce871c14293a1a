"""ONNX export of a pixel policy: the frozen encoder and the policy in one graph, uint8 frames in.

A pixel policy's artifact holds the policy head (trained on cached backbone features) and the frozen
encoder's state (its weights and BatchNorm statistics, e.g. after AdaBN). The exported graph computes,
from what the env gives:

    image   uint8 [batch, H, W, 3k]  (the env's stacked frames, HWC, oldest first)  -> frozen backbone,
            pooled per frame, read out (``perception.readout``)
    other entries of a Dict observation (``action_history``, ``state``): float32 [batch, n] each
    -> concatenated after the features (the artifact's ``observation_layout``), normalized (the
       policy's statistics, in the graph), the deterministic action (``export.DeterministicPolicy``).

The JSON beside it names each input, its shape and dtype, the layout, how the action history is
filled and what ``predict()`` it was verified against. Policies whose backbone trains inside the
policy (``cache_features: false``) are refused with one line (not exportable yet).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from agents.extractors import BackboneExtractor
from simreal.simulation.pixels import IMAGE_KEY
from simreal.training.engine.artifacts import ArtifactError, atomic_write_text, load_policy, space_from
from simreal.training.engine.evaluation import normalize
from simreal.training.engine.export.onnx import (
    OPSET,
    VERIFY_TOLERANCE,
    DeterministicPolicy,
    ExportError,
    describe_export,
    require,
    sidecar_path,
    strict_json,
    temp_beside,
)
from simreal.training.engine.sb3.loading import LoadedPolicy, load_for_env


class PixelPolicy(nn.Module):
    """``(image, *entries) -> action``: the frozen encoder, the entries after its features, the policy."""

    def __init__(self, encoder: BackboneExtractor, policy: DeterministicPolicy, entries: list[str]) -> None:
        super().__init__()
        self.encoder = encoder.eval()
        self.policy = policy.eval()
        self.entries = entries

    def forward(self, image: torch.Tensor, *entries: torch.Tensor) -> torch.Tensor:
        features = self.encoder.backbone_features(image)
        rest = [entry.to(torch.float32).flatten(1) for entry in entries]
        return self.policy(torch.cat([features, *rest], dim=1) if rest else features)


def _rebuild(model_path: Path) -> tuple[LoadedPolicy, dict[str, Any]]:
    art = load_policy(model_path)
    perception = art.meta.get("perception") or {}
    if not perception.get("cache_features", True):
        raise ExportError(
            f"{model_path}: a pixel policy whose backbone sits in the policy (cache_features: false) is not "
            "exportable yet (allowed: a policy trained with perception.cache_features: true)"
        )

    def no_env() -> Any:
        raise ArtifactError("export opens no env")

    loaded = load_for_env(model_path, no_env, torch.device("cpu"), seed=0)
    loaded.model.policy.set_training_mode(False)
    return loaded, art.meta


def _inputs(meta: dict[str, Any]) -> dict[str, Any]:
    """The env observation's entries as the graph's inputs: the image first, then the layout's order."""
    env_space = meta["env_observation_space"]
    spaces = env_space["spaces"] if env_space["type"] == "Dict" else {IMAGE_KEY: env_space}
    layout = meta.get("observation_layout") or {IMAGE_KEY: None}
    return {key: spaces[key] for key in layout}


def _random_inputs(inputs: dict[str, Any], n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = {}
    for key, desc in inputs.items():
        shape = (n, *desc["shape"])
        if desc["dtype"] == "uint8":
            out[key] = rng.integers(0, 256, shape, dtype=np.uint8)
        else:
            box = space_from(desc)
            assert isinstance(box, gym.spaces.Box)
            low = np.where(np.isfinite(box.low), box.low, -1.0)
            high = np.where(np.isfinite(box.high), box.high, 1.0)
            out[key] = rng.uniform(low, high, shape).astype(np.float32)
    return out


def _predict(loaded: LoadedPolicy, obs: dict[str, np.ndarray]) -> np.ndarray:
    """SB3 ``predict(deterministic=True)`` on what the policy reads, one observation after another
    (as an evaluation feeds it) - the reference the graph is verified against. `obs` holds the graph's
    inputs; an image-only policy's env observation is the image itself."""
    n = len(obs[IMAGE_KEY])
    actions = []
    for i in range(n):
        one: Any = {k: v[i] for k, v in obs.items()} if len(obs) > 1 else obs[IMAGE_KEY][i]
        action, _ = loaded.model.predict(
            normalize(loaded.encoder.encode(one), loaded.obs_rms), deterministic=True
        )
        actions.append(action)
    return np.stack(actions)


def export_pixel_onnx(model_path: str | Path, out: str | Path, samples: int = 16) -> tuple[Path, float]:
    """Export a pixel policy to ONNX with its JSON; returns the path and the verified max error."""
    require("onnx", "ONNX export")
    ort = require("onnxruntime", "ONNX export")
    model_path, out = Path(model_path), Path(out)
    loaded, meta = _rebuild(model_path)
    assert loaded.encoder.cached is not None
    model: BaseAlgorithm = loaded.model
    policy = DeterministicPolicy(meta["algo"]["name"], model.policy, loaded.obs_rms).eval()
    inputs = _inputs(meta)
    entries = [key for key in inputs if key != IMAGE_KEY]
    graph = PixelPolicy(loaded.encoder.cached.extractor, policy, entries).eval()
    dummy = _random_inputs(inputs, 1, np.random.default_rng(1))
    names = list(inputs)
    axes = {name: {0: "batch"} for name in [*names, "action"]}
    tmp = temp_beside(out)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*legacy TorchScript-based ONNX export", DeprecationWarning)
            warnings.filterwarnings("ignore", "The feature will be removed", DeprecationWarning)
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(
                graph,
                tuple(torch.as_tensor(dummy[name]) for name in names),
                str(tmp),
                dynamo=False,
                input_names=names,
                output_names=["action"],
                dynamic_axes=axes,
                opset_version=OPSET,
            )
        obs = _random_inputs(inputs, samples, np.random.default_rng(0))
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = session.run(None, {name: obs[name] for name in names})[0]
        want = _predict(loaded, obs)
        error = float(np.max(np.abs(got - want.reshape(got.shape))))
        if not error <= VERIFY_TOLERANCE:
            raise ExportError(f"{out}: ONNX output differs from SB3's predict by {error:.2e}")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    info = describe_export(model_path, out, "onnx", meta, policy)
    info["input"] = _describe_inputs(meta, inputs)
    info["observation"] = meta.get("observation")  # the env's entries are the inputs, described above
    info["normalization_applies_to"] = "the features and entries after the encoder (in the graph)"
    info["verification"] = {
        "samples": samples,
        "max_abs_error": error,
        "against": "SB3 predict(deterministic) on the cached features of the same frames",
    }
    info["exporter"] = {"function": "torch.onnx.export", "dynamo": False, "opset_version": OPSET}
    atomic_write_text(strict_json(info), sidecar_path(out))
    return out, error


def _describe_inputs(meta: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    """What the deployer feeds: each input's name, shape, dtype and meaning, in the graph's order."""
    perception = meta.get("perception") or {}
    described: dict[str, Any] = {}
    for key, desc in inputs.items():
        item = {"name": key, "shape": ["batch", *desc["shape"]], "dtype": desc["dtype"]}
        if key == IMAGE_KEY:
            item["meaning"] = (
                "the env's stacked RGB frames, HWC, oldest first (as StackFrames gives them), raw 0-255; "
                f"encoded by the frozen {perception.get('backbone')} (readout {perception.get('readout')})"
            )
        elif key == "action_history":
            act = meta["action_space"]
            item["meaning"] = (
                "the last k actions taken, oldest first; before the first action the neutral one"
            )
            item["neutral_action"] = np.clip(
                np.zeros(int(np.prod(act["shape"]))), act["low"], act["high"]
            ).tolist()
        elif key == "state":
            item["meaning"] = "the robot's state vector as the env observes it beside the camera"
        described[key] = item
    return {"inputs": list(described.values()), "layout": meta.get("observation_layout")}
