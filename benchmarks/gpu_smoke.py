"""GPU smoke test: EfficientNet-Lite0 under autocast, a cached-features PPO update, the Warp backend on CUDA.

Usage: python benchmarks/gpu_smoke.py [--device cuda|cpu]

Exit codes: 0 all checks passed, 1 a check failed, 2 CUDA requested but not available. ``--device cpu``
runs the same checks in fp32 on the CPU (what CI and ``tests/test_features.py`` run). Takes well under
2 minutes on either.

1. EfficientNet-Lite0 with its packaged ImageNet weights, channels_last, autocast bf16 on CUDA: top-1 of
   skimage's cat photo must be a cat class (skipped without scikit-image), and a random 64x64 batch gives
   finite features of the right shape.
2. One PPO update from pixels on a fake image env with cached frozen features (``VecFrozenFeatures`` +
   ``CachedFeaturesHead``): the rollout buffer holds features, the head changes, the backbone does not.
3. ``sim_backend: warp`` (with mujoco-warp installed): the randomized pendulum as 4,096 MuJoCo Warp worlds
   on the device (256 on the CPU): its state lives there, 300 synchronized steps match Gymnasium's env,
   and a throughput line - raw env steps/s, and PPO collect + update steps/s (goal on a GPU: >= 100x the
   best Gymnasium setting of ``BENCHMARKS.md``). The first run compiles Warp's kernels (minutes on CUDA).
4. One pixel training iteration of the shipped pixel config (``configs/inverted_pendulum_pixels.yaml``:
   MuJoCo frames rendered offscreen, the frozen ImageNet backbone, the Dict of features and action
   history, PPO) through ``simreal pretrain`` on the device: one rollout (the config's on CUDA, 32 steps
   per env on the CPU) and its update, a THROUGHPUT line (env steps/s, collect + update, env
   construction included), and the artifact's layout and frozen encoder checked.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from stable_baselines3 import PPO

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_backbone import fake_vec_env  # noqa: E402

from agents.backbones import efficientnet_lite0  # noqa: E402
from simreal.training.engine.features import cache_frozen_features  # noqa: E402

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


class CheckFailed(Exception):
    """A smoke check did not hold."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def timed(label: str, fn: Callable[[], Any], device: torch.device) -> Any:
    """Run ``fn``, print its wall time (CUDA synchronized), return its result."""
    start = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    print(f"  {label}: {time.perf_counter() - start:.3f} s")
    return result


def autocast(device: torch.device) -> Any:
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return torch.autocast(device_type="cpu", enabled=False)


def check_backbone(device: torch.device) -> None:
    print("EfficientNet-Lite0 (packaged ImageNet weights)")
    model = timed("load", lambda: efficientnet_lite0("imagenet"), device)
    model = model.to(device).eval().to(memory_format=torch.channels_last)
    mean = torch.tensor(model.input_mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(model.input_std, device=device).view(1, 3, 1, 1)
    try:
        from skimage import data as skimage_data
    except ImportError:
        print("  scikit-image not installed: cat classification skipped")
    else:
        image = torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1).float().div(255.0)[None]
        image = F.interpolate(image, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
        x = ((image.to(device) - mean) / std).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), autocast(device):
            probs = timed("cat 224x224", lambda: model.logits(x).float().softmax(-1)[0], device)
        top = int(probs.argmax())
        check(top in CAT_CLASSES, f"cat photo top-1 class {top} (p={float(probs[top]):.3f}) is not a cat")
        print(f"  cat photo: top-1 class {top}, p={float(probs[top]):.3f}")
    batch = torch.rand(32, 3, 64, 64, generator=torch.Generator().manual_seed(0)).to(device)
    x = ((batch - mean) / std).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), autocast(device):
        model(x)  # warm-up
        features = timed("random batch 32x3x64x64", lambda: model(x), device)
    check(features.shape == (32, 1280, 2, 2), f"feature map shape {tuple(features.shape)}")
    check(bool(torch.isfinite(features).all()), "non-finite features")


def check_cached_ppo(device: torch.device) -> None:
    print("PPO update from pixels, cached frozen features")
    n_envs, n_steps = 4, 32
    spec = {"backbone": "efficientnet_lite0", "weights": "imagenet", "features_dim": 64}
    venv, policy_kwargs = cache_frozen_features(fake_vec_env(n_envs, 64), device, **spec)
    ppo: dict[str, Any] = {"n_steps": n_steps, "batch_size": 64, "n_epochs": 2, "device": device, "seed": 0}
    model = PPO("MlpPolicy", venv, policy_kwargs=policy_kwargs, **ppo)
    frozen_before = {k: v.clone() for k, v in venv.extractor.backbone.state_dict().items()}
    head_before = {k: v.clone() for k, v in model.policy.features_extractor.state_dict().items()}
    timed(f"collect {n_steps}x{n_envs} + train 2 epochs", lambda: model.learn(n_steps * n_envs), device)
    stored = model.rollout_buffer.observations.shape
    check(stored[-1:] == (1280,), f"rollout buffer holds {stored}, not 1280-d features")
    frozen_after = venv.extractor.backbone.state_dict()
    check(all(torch.equal(v, frozen_after[k]) for k, v in frozen_before.items()), "frozen backbone changed")
    head_after = model.policy.features_extractor.state_dict()
    check(any(not torch.equal(v, head_after[k]) for k, v in head_before.items()), "head did not train")
    check(next(model.policy.parameters()).device.type == device.type, "policy not on the requested device")
    print(f"  rollout buffer observations {tuple(stored)}; backbone unchanged, head trained")


def check_warp(device: torch.device) -> None:
    try:
        import mujoco_warp  # noqa: F401
    except ImportError:
        print("MuJoCo Warp backend: mujoco-warp not installed, skipped")
        return
    import gymnasium as gym
    import numpy as np

    import simreal  # noqa: F401 - registers the packaged tasks
    from simreal.simulation.batched import make_batched
    from simreal.simulation.registry import PACKAGED

    nworld = 4096 if device.type == "cuda" else 256
    print(f"MuJoCo Warp backend: randomized pendulum, {nworld} worlds")
    task = PACKAGED["inverted_pendulum"]
    venv = timed("build", lambda: make_batched(task, True, nworld, 0, device), device)
    venv.reset()
    check(venv.state.qpos.device.type == device.type, f"world state on {venv.state.qpos.device}")
    zeros = np.zeros((nworld, 1), dtype=np.float32)
    timed("first step (compile or cache)", lambda: venv.step(zeros), device)
    nominal = make_batched(task, False, 2, 0, device)
    nominal.reset()
    env = gym.make(task.nominal_id).unwrapped
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    worst = 0.0
    for t in range(300):
        nominal.state.qpos[:] = torch.as_tensor(env.data.qpos, device=device)
        nominal.state.qvel[:] = torch.as_tensor(env.data.qvel, device=device)
        action = rng.uniform(-1, 1, (1,)).astype(np.float32)
        obs, _, terminated, _, _ = env.step(action)
        got, _, _, infos = nominal.step(np.tile(action, (2, 1)))
        worst = max(worst, float(np.abs(infos[0].get("terminal_observation", got[0]) - obs).max()))
        if terminated:
            env.reset(seed=t)
    check(worst < 1e-4, f"Warp worlds differ from Gymnasium's env by {worst:.2e}")
    print(f"  300 synchronized steps: largest observation difference {worst:.1e}")
    steps = 50
    start = time.perf_counter()
    for _ in range(steps):
        venv.step(rng.uniform(-1, 1, (nworld, 1)).astype(np.float32))
    print(f"  THROUGHPUT raw env steps/s: {steps * nworld / (time.perf_counter() - start):,.0f}")
    model = PPO("MlpPolicy", venv, n_steps=16, batch_size=nworld * 4, n_epochs=5, device=device, seed=0)
    model.learn(16 * nworld)  # warm-up: one rollout and update
    start = time.perf_counter()
    model.learn(4 * 16 * nworld, reset_num_timesteps=False)
    rate = 4 * 16 * nworld / (time.perf_counter() - start)
    print(f"  THROUGHPUT PPO collect + update env steps/s: {rate:,.0f}")


def check_pixel_iteration(device: torch.device) -> None:
    import tempfile

    from simreal.cli import main as simreal_main
    from simreal.config import load_config
    from simreal.training.engine.artifacts import load_policy

    print("one pixel training iteration (configs/inverted_pendulum_pixels.yaml)")
    config = Path(__file__).resolve().parents[1] / "configs/inverted_pendulum_pixels.yaml"
    cfg = load_config(config)
    # The config's rollout on a GPU; a short one on the CPU, where this runs in the test suite.
    n_steps = int(cfg.algo.kwargs.get("n_steps", 2048)) if device.type == "cuda" else 32
    steps = cfg.algo.n_envs * n_steps
    with tempfile.TemporaryDirectory() as out:
        args = ["pretrain", str(config), "--seeds", "0", "--no-progress", "--device", device.type]
        args += ["--set", f"output_dir={out}", "--set", f"pretrain.timesteps={steps}"]
        args += [
            "--set",
            f"algo.kwargs.n_steps={n_steps}",
            "--set",
            f"algo.kwargs.batch_size={min(256, steps)}",
        ]
        start = time.perf_counter()
        check(simreal_main(args) == 0, "simreal pretrain of the pixel config failed")
        rate = steps / (time.perf_counter() - start)
        art = load_policy(next(Path(out).rglob("policy.pt")))
    check(art.backbone is not None, "the frozen encoder's state is not in the artifact")
    layout = art.meta.get("observation_layout") or {}
    check("image" in layout, f"no observation layout recorded ({layout})")
    print(f"  {steps} steps, layout {layout}")
    print(f"  THROUGHPUT pixel PPO collect + update env steps/s (with env construction): {rate:,.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "gpu_smoke: CUDA is not available (torch.cuda.is_available() is False, torch "
            f"{torch.__version__}); run on a CUDA machine or pass --device cpu",
            file=sys.stderr,
        )
        return 2
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}, torch {torch.__version__}")
    start = time.perf_counter()
    try:
        check_backbone(device)
        check_cached_ppo(device)
        check_warp(device)
        check_pixel_iteration(device)
    except CheckFailed as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    print(f"OK in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
