"""Cached frozen features: ``VecFrozenFeatures`` + ``CachedFeaturesHead`` against the in-policy extractor.

Small frames (32-40 px) and the small CNN (loaded from a local file: a cached frozen backbone must be
rebuildable) everywhere, EfficientNet-Lite0 with its packaged weights for one equivalence case, ResNet-18
from a local file where BatchNorm is needed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecEnvWrapper, VecFrameStack
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn
from stable_baselines3.common.vec_env.vec_transpose import VecTransposeImage

from agents.backbones import resnet18, small_cnn
from agents.extractors import BackboneExtractor
from agents.heads import CachedFeaturesHead
from simreal.simulation.pixels import StackFrames
from simreal.training.engine.features import VecFrozenFeatures, cache_frozen_features, split_extractor

ROOT = Path(__file__).resolve().parents[1]
SIDE = 40  # the small CNN needs at least 36 px


class _FrameEnv(gym.Env[np.ndarray, np.ndarray]):
    """Random uint8 HWC frames from ``np_random``, 2-d actions, truncated after ``episode_steps``."""

    action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)

    def __init__(self, side: int = SIDE, episode_steps: int = 4):
        self.observation_space = spaces.Box(0, 255, (side, side, 3), np.uint8)
        self.episode_steps = episode_steps
        self._t = 0

    def _frame(self) -> np.ndarray:
        return self.np_random.integers(0, 256, self.observation_space.shape, dtype=np.uint8)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._t = 0
        return self._frame(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._t += 1
        return self._frame(), float(action[0]), False, self._t >= self.episode_steps, {}


class _Recorder(VecEnvWrapper):
    """Keeps copies of the raw observations and terminal observations before the features wrapper."""

    def __init__(self, venv: VecEnv):
        super().__init__(venv)
        self.obs: np.ndarray = np.empty(0)
        self.terminal: dict[int, np.ndarray] = {}

    def reset(self) -> Any:
        obs = self.venv.reset()
        self.obs = _copy(obs)
        return obs

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        self.obs = _copy(obs)
        self.terminal = {i: _copy(info["terminal_observation"]) for i, info in enumerate(infos) if dones[i]}
        return obs, rewards, dones, infos


def _copy(obs: Any) -> Any:
    """A copy of an observation batch: an array, or a dict of arrays."""
    return {k: np.array(v) for k, v in obs.items()} if isinstance(obs, dict) else np.array(obs)


def _venv(n_envs: int = 2, n_stack: int = 1, side: int = SIDE, episode_steps: int = 4) -> VecEnv:
    venv: VecEnv = DummyVecEnv([lambda: _FrameEnv(side, episode_steps)] * n_envs)
    if n_stack > 1:
        venv = VecFrameStack(venv, n_stack)
    venv.seed(0)
    return venv


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Local state-dict files for the backbones without packaged weights."""
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    torch.save(small_cnn(None).state_dict(), folder / "small_cnn.pth")
    torch.save(resnet18(None).state_dict(), folder / "resnet18.pth")
    return folder


def _spec(weights_dir: Path, **kwargs: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"backbone": "small_cnn", "weights": str(weights_dir / "small_cnn.pth")}
    spec["features_dim"] = 16
    spec.update(kwargs)
    return spec


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize(
    ("options", "n_stack", "side"),
    [
        ({}, 1, SIDE),
        ({"unfreeze_last": 1}, 2, SIDE),
        ({"backbone": "efficientnet_lite0", "weights": "imagenet", "image_size": 48}, 2, 32),
        ({"pool": 2}, 2, SIDE),
        ({"pool": 2, "unfreeze_last": 1}, 1, SIDE),
        ({"backbone": "efficientnet_lite0", "weights": "imagenet", "tap": "stage3", "pool": 3}, 1, 32),
        ({"pool": 2, "readout": "diff"}, 3, SIDE),
        ({"readout": "diff", "unfreeze_last": 1}, 2, SIDE),
        ({"pool": 2, "projection": "keypoints", "keypoints": 3}, 3, SIDE),
        ({"pool": 2, "projection": "keypoints", "unfreeze_last": 1}, 2, SIDE),
    ],
    ids=[
        "small_cnn-frozen",
        "small_cnn-unfreeze1-stack2",
        "efficientnet-imagenet-stack2",
        "small_cnn-grid2-stack2",
        "small_cnn-grid2-unfreeze1",
        "efficientnet-stage3-grid3",
        "small_cnn-grid2-stack3-diff",
        "small_cnn-unfreeze1-stack2-diff",
        "small_cnn-grid2-stack3-keypoints",
        "small_cnn-grid2-unfreeze1-keypoints",
    ],
)
def test_head_on_cached_features_equals_the_extractor_on_images(
    weights_dir: Path, options: dict[str, Any], n_stack: int, side: int
) -> None:
    spec = _spec(weights_dir, **options)
    recorder = _Recorder(_venv(n_stack=n_stack, side=side, episode_steps=2))
    venv, policy_kwargs = cache_frozen_features(recorder, "cpu", **spec)
    # The uncached reference sees what SB3 feeds a policy: VecTransposeImage, then preprocess_obs.
    chw = VecTransposeImage.transpose_space(recorder.observation_space)  # type: ignore[arg-type]
    extractor = BackboneExtractor(chw, **spec).eval()
    head = CachedFeaturesHead(venv.feature_space, **policy_kwargs["features_extractor_kwargs"])
    assert not head.extractor.load_state_dict(extractor.state_dict(), strict=False).missing_keys
    head.eval()

    def reference(raw: np.ndarray) -> torch.Tensor:
        obs = torch.as_tensor(VecTransposeImage.transpose_image(raw))
        return extractor(preprocess_obs(obs, chw))

    def check(features: np.ndarray, raw: np.ndarray) -> None:
        torch.testing.assert_close(head(torch.as_tensor(features)), reference(raw), atol=1e-5, rtol=1e-5)

    with torch.no_grad():
        features = np.asarray(venv.reset())
        assert features.dtype == np.float32 and features.shape == (2, *venv.feature_space.shape)
        check(features, recorder.obs)
        for _ in range(2):  # the second step ends both episodes
            obs, _, dones, infos = venv.step(np.zeros((2, 2), np.float32))
            check(np.asarray(obs), recorder.obs)
        assert dones.all()
        terminal = np.stack([infos[i]["terminal_observation"] for i in range(2)])
        check(terminal, np.stack([recorder.terminal[i] for i in range(2)]))


def _count_encoded_frames(venv: VecFrozenFeatures) -> list[int]:
    """Record how many frames each backbone call of `venv` encodes."""
    encoded: list[int] = []
    frame_features = venv.extractor.frame_features

    def counting(frames: torch.Tensor) -> torch.Tensor:
        encoded.append(len(frames))
        return frame_features(frames)

    venv.extractor.frame_features = counting  # type: ignore[method-assign]
    return encoded


@pytest.mark.parametrize(
    ("channels_first", "readout"),
    [(False, "stack"), (True, "stack"), (False, "diff")],
    ids=["HWC", "CHW", "diff"],
)
def test_stacked_frames_are_encoded_once_and_features_match_a_full_encode(
    weights_dir: Path, channels_first: bool, readout: str
) -> None:
    """simreal's StackFrames (k=3, reset fills every slot with the reset frame), episodes of 3 steps:
    every observation's features equal a full encode, while the backbone sees each new frame once."""
    k, n_envs = 3, 2

    def make() -> gym.Env[np.ndarray, np.ndarray]:
        env: gym.Env[np.ndarray, np.ndarray] = StackFrames(_FrameEnv(episode_steps=3), k)
        if channels_first:
            env = gym.wrappers.TransformObservation(
                env,
                lambda o: np.ascontiguousarray(o.transpose(2, 0, 1)),
                spaces.Box(0, 255, (3 * k, SIDE, SIDE), np.uint8),
            )
        return env

    recorder = _Recorder(DummyVecEnv([make] * n_envs))
    recorder.seed(0)
    venv, _ = cache_frozen_features(recorder, "cpu", **_spec(weights_dir, pool=2, readout=readout))
    encoded = _count_encoded_frames(venv)

    def check(features: np.ndarray, raw: np.ndarray) -> None:
        np.testing.assert_allclose(features, venv.encode(raw), atol=1e-5, rtol=1e-5)

    check(np.asarray(venv.reset()), recorder.obs)
    assert encoded == [n_envs]  # one distinct frame per env at reset
    for step in range(1, 7):
        obs, _, dones, infos = venv.step(np.zeros((n_envs, 2), np.float32))
        check(np.asarray(obs), recorder.obs)
        if step % 3:
            assert not dones.any() and encoded[-1] == n_envs  # only the newest frame of each env
        else:  # episodes end: the terminal observation's newest frame and the reset frame
            assert dones.all() and encoded[-1] == 2 * n_envs
            terminal = np.stack([infos[i]["terminal_observation"] for i in range(n_envs)])
            check(terminal, np.stack([recorder.terminal[i] for i in range(n_envs)]))
    # after the extractor changes (AdaBN), nothing stale is reused
    venv.adapt_batchnorm(recorder.obs)
    obs, *_ = venv.step(np.zeros((n_envs, 2), np.float32))
    assert encoded[-1] == 2 * n_envs  # [reset, reset, new]: both distinct frames encoded again
    check(np.asarray(obs), recorder.obs)


def test_ppo_trains_the_head_on_cached_features_and_the_frozen_backbone_stays_bit_identical(
    weights_dir: Path,
) -> None:
    venv, policy_kwargs = cache_frozen_features(_venv(), "cpu", **_spec(weights_dir, unfreeze_last=1))
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=32,
        batch_size=16,
        n_epochs=2,
        seed=0,
        device="cpu",
        policy_kwargs=policy_kwargs,
    )
    head = model.policy.features_extractor
    assert isinstance(head, CachedFeaturesHead)
    assert {k.split(".")[2] for k in head.state_dict() if ".backbone." in k} == {"conv3"}  # frozen ones out
    frozen_before, head_before = _state(venv.extractor), _state(head)

    model.learn(total_timesteps=64)

    assert model.rollout_buffer.observations.shape[1:] == venv.observation_space.shape  # features, not images
    for key, value in venv.extractor.state_dict().items():
        assert torch.equal(value, frozen_before[key]), key
    head_after = head.state_dict()
    changed = {key for key, value in head_before.items() if not torch.equal(value, head_after[key])}
    assert "extractor.backbone.conv3.weight" in changed and "extractor.projection.0.weight" in changed


def test_sac_replay_buffer_stores_features(weights_dir: Path) -> None:
    venv, policy_kwargs = cache_frozen_features(_venv(), "cpu", **_spec(weights_dir))
    policy_kwargs["net_arch"] = [16]
    model = SAC(
        "MlpPolicy",
        venv,
        buffer_size=40,
        learning_starts=8,
        batch_size=8,
        seed=0,
        device="cpu",
        policy_kwargs=policy_kwargs,
    )
    model.learn(total_timesteps=24)

    buffer = model.replay_buffer
    assert buffer is not None
    feature_shape = venv.observation_space.shape
    assert feature_shape == (64,)  # small_cnn conv3: 64 channels, pooled
    stored = (20, 2, *feature_shape)  # buffer_size is split over the 2 envs
    assert buffer.observations.shape == stored
    assert buffer.next_observations is not None and buffer.next_observations.shape == stored
    assert buffer.observations.dtype == np.float32 and np.abs(buffer.observations[: buffer.pos]).sum() > 0


def test_terminal_observation_in_infos_is_converted(weights_dir: Path) -> None:
    recorder = _Recorder(_venv(episode_steps=3))
    frozen, _ = split_extractor(recorder.observation_space, **_spec(weights_dir))
    venv = VecFrozenFeatures(recorder, frozen, "cpu")
    venv.reset()
    actions = np.zeros((2, 2), np.float32)
    for _ in range(3):
        obs, _, dones, infos = venv.step(actions)
    features = np.asarray(obs)
    assert dones.all()
    for i, info in enumerate(infos):
        terminal = info["terminal_observation"]
        assert terminal.dtype == np.float32 and terminal.shape == venv.observation_space.shape
        np.testing.assert_allclose(terminal, venv.encode(recorder.terminal[i][None])[0], atol=1e-6)
    np.testing.assert_allclose(features, venv.encode(recorder.obs), atol=1e-6)  # first frames after reset
    assert not np.array_equal(features, np.stack([info["terminal_observation"] for info in infos]))


def test_adapt_batchnorm_through_the_wrapper_changes_only_the_statistics(weights_dir: Path) -> None:
    spec = _spec(weights_dir, backbone="resnet18", weights=str(weights_dir / "resnet18.pth"))
    venv, _ = cache_frozen_features(_venv(side=32), "cpu", **spec)
    backbone = venv.extractor.backbone
    before = _state(backbone)
    images = np.random.default_rng(0).integers(128, 256, (16, 32, 32, 3), dtype=np.uint8)  # brighter
    features_before = venv.encode(images[:4])

    adapted = venv.adapt_batchnorm(images, batch_size=8)

    norms = [m for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert adapted == len(norms) > 0 and not any(bn.training for bn in norms)
    assert not torch.allclose(backbone.state_dict()["bn1.running_mean"], before["bn1.running_mean"])
    for name, param in backbone.named_parameters():
        assert torch.equal(param, before[name]), name
    assert not np.allclose(venv.encode(images[:4]), features_before)
    with pytest.raises(ValueError, match="expected images"):
        venv.adapt_batchnorm(images[:, :16])


def test_policy_state_dict_reloads_into_a_policy_rebuilt_from_the_spec(weights_dir: Path) -> None:
    spec = _spec(weights_dir, unfreeze_last=1)

    def build() -> PPO:
        venv, policy_kwargs = cache_frozen_features(_venv(), "cpu", **spec)
        return PPO(
            "MlpPolicy",
            venv,
            n_steps=16,
            batch_size=16,
            n_epochs=1,
            device="cpu",
            policy_kwargs=policy_kwargs,
        )

    trained = build()
    trained.learn(total_timesteps=32)
    state = trained.policy.state_dict()
    restored = build()
    restored.policy.load_state_dict(state, strict=True)
    env = trained.get_env()
    assert env is not None
    obs = np.asarray(env.reset())
    np.testing.assert_array_equal(
        trained.predict(obs, deterministic=True)[0], restored.predict(obs, deterministic=True)[0]
    )


def test_specs_that_cannot_be_cached_are_rejected(weights_dir: Path) -> None:
    space = _FrameEnv().observation_space
    with pytest.raises(ValueError, match="nothing to cache"):
        split_extractor(space, **_spec(weights_dir, frozen=False))
    with pytest.raises(ValueError, match="no frozen block"):
        split_extractor(space, **_spec(weights_dir, unfreeze_last=3))
    with pytest.raises(ValueError, match="image Box"):
        split_extractor(spaces.Box(0, 1, (8,), np.float32), **_spec(weights_dir))
    stacked_space = spaces.Box(0, 255, (SIDE, SIDE, 6), np.uint8)
    frozen, _ = split_extractor(stacked_space, **_spec(weights_dir))
    with pytest.raises(ValueError, match="does not fit the extractor"):
        VecFrozenFeatures(_venv(), frozen, "cpu")


def _run_gpu_smoke(device: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the 2 shared cores: no OpenMP spinning
    command = [sys.executable, str(ROOT / "benchmarks" / "gpu_smoke.py"), "--device", device]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_gpu_smoke_runs_on_cpu() -> None:
    result = _run_gpu_smoke("cpu")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK in" in result.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA exit code")
def test_gpu_smoke_without_cuda_exits_2_with_a_message() -> None:
    result = _run_gpu_smoke("cuda")
    assert result.returncode == 2 and "CUDA is not available" in result.stderr


class _StillEnv(_FrameEnv):
    """A scene that never changes: every frame is the same."""

    def _frame(self) -> np.ndarray:
        return np.full((SIDE, SIDE, 3), 90, dtype=np.uint8)


def test_a_static_scene_encodes_its_one_frame_once_and_then_nothing(weights_dir: Path) -> None:
    recorder = _Recorder(DummyVecEnv([lambda: StackFrames(_StillEnv(episode_steps=10), 3)] * 2))
    venv, _ = cache_frozen_features(recorder, "cpu", **_spec(weights_dir))
    encoded = _count_encoded_frames(venv)
    first = np.asarray(venv.reset())
    for _ in range(3):
        obs, *_ = venv.step(np.zeros((2, 2), np.float32))
        np.testing.assert_allclose(np.asarray(obs), venv.encode(recorder.obs), atol=1e-5, rtol=1e-5)
        np.testing.assert_array_equal(np.asarray(obs), first)
    assert encoded == [2]  # the reset frame of each env; the steps bring nothing new


def test_diff_readout_is_the_newest_frame_then_consecutive_differences(weights_dir: Path) -> None:
    space = spaces.Box(0, 255, (SIDE, SIDE, 9), np.uint8)
    stack = BackboneExtractor(space, **_spec(weights_dir, pool=2)).eval()
    diff = BackboneExtractor(space, **_spec(weights_dir, pool=2, readout="diff")).eval()
    diff.load_state_dict(stack.state_dict())
    obs = torch.as_tensor(np.random.default_rng(0).integers(0, 256, (4, SIDE, SIDE, 9), dtype=np.uint8))
    f1, f2, f3 = stack.backbone_features(obs).reshape(4, 3, -1).unbind(1)
    torch.testing.assert_close(diff.backbone_features(obs), torch.cat([f3, f3 - f2, f2 - f1], dim=1))


class _DictFrameEnv(_FrameEnv):
    """Frames plus a 3-d state, as a Dict; the state counts the steps."""

    def __init__(self) -> None:
        super().__init__(episode_steps=3)
        state = spaces.Box(-np.inf, np.inf, (3,), np.float32)
        self.image_space = self.observation_space
        self.observation_space = spaces.Dict({"image": self.image_space, "state": state})  # type: ignore[assignment]

    def _frame(self) -> np.ndarray:
        return self.np_random.integers(0, 256, self.image_space.shape, dtype=np.uint8)

    def _obs(self, image: np.ndarray) -> dict[str, np.ndarray]:
        return {"image": image, "state": np.full(3, self._t, np.float32)}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        image, info = super().reset(seed=seed)
        return self._obs(image), info

    def step(self, action: np.ndarray) -> Any:
        image, *rest = super().step(action)
        return (self._obs(image), *rest)


def test_dict_observations_become_features_then_the_other_entries_in_order(weights_dir: Path) -> None:
    """{image, state} + the action history: one flat vector, the layout naming each entry's slice; the
    head projects the features and passes the rest by; terminal observations too."""
    from simreal.simulation.observation import ActionHistory

    def make() -> gym.Env[Any, Any]:
        return ActionHistory(StackFrames(_DictFrameEnv(), 2), 2)  # type: ignore[arg-type]

    recorder = _Recorder(DummyVecEnv([make] * 2))
    recorder.seed(0)
    # Gymnasium's Dict keeps its keys sorted; the features come first, then the others in that order.
    assert list(recorder.observation_space.spaces) == ["action_history", "image", "state"]  # type: ignore[attr-defined]
    venv, policy_kwargs = cache_frozen_features(recorder, "cpu", **_spec(weights_dir, pool=2, readout="diff"))
    width = venv.extractor.pooled_features()
    assert venv.layout == {
        "image": (0, width),
        "action_history": (width, width + 4),
        "state": (width + 4, width + 7),
    }
    assert venv.feature_space.shape == (width + 7,)
    head = CachedFeaturesHead(venv.feature_space, **policy_kwargs["features_extractor_kwargs"]).eval()
    assert head.features_dim == 16 + 7

    def check(features: np.ndarray, raw: dict[str, np.ndarray]) -> None:
        np.testing.assert_allclose(features[:, :width], venv.encode(raw["image"]), atol=1e-5, rtol=1e-5)
        np.testing.assert_array_equal(features[:, width : width + 4], raw["action_history"])
        np.testing.assert_array_equal(features[:, width + 4 :], raw["state"])
        with torch.no_grad():
            out = head(torch.as_tensor(features))
        np.testing.assert_array_equal(out[:, 16:].numpy(), features[:, width:])

    check(np.asarray(venv.reset()), recorder.obs)  # type: ignore[arg-type]
    actions = [
        np.full((2, 2), 0.5, np.float32),
        np.full((2, 2), -0.25, np.float32),
        np.zeros((2, 2), np.float32),
    ]
    for step, action in enumerate(actions, start=1):
        obs, _, dones, infos = venv.step(action)
        check(np.asarray(obs), recorder.obs)  # type: ignore[arg-type]
        if step == 2:  # the history holds the last two actions, oldest first
            np.testing.assert_array_equal(
                np.asarray(obs)[:, width : width + 4], np.full((2, 4), [0.5, 0.5, -0.25, -0.25])
            )
    assert dones.all()
    terminal = np.stack([infos[i]["terminal_observation"] for i in range(2)])
    raw = {
        key: np.stack([recorder.terminal[i][key] for i in range(2)])
        for key in ("image", "state", "action_history")
    }
    check(terminal, raw)
    np.testing.assert_array_equal(
        raw["state"], np.full((2, 3), 3.0)
    )  # the terminal step's state, not the reset's


def test_dict_extractor_in_the_policy_equals_the_head_on_cached_dict_features(weights_dir: Path) -> None:
    """The two paths of a Dict observation agree: `DictBackboneExtractor` on what SB3 feeds a
    MultiInputPolicy, and `CachedFeaturesHead` on `VecFrozenFeatures`' flat vector."""
    from agents.heads import DictBackboneExtractor
    from simreal.simulation.observation import ActionHistory

    recorder = _Recorder(DummyVecEnv([lambda: ActionHistory(StackFrames(_DictFrameEnv(), 2), 2)] * 2))  # type: ignore[arg-type]
    recorder.seed(0)
    spec = _spec(weights_dir, pool=2, readout="diff")
    venv, policy_kwargs = cache_frozen_features(recorder, "cpu", **spec)
    head = CachedFeaturesHead(venv.feature_space, **policy_kwargs["features_extractor_kwargs"]).eval()
    transposed = VecTransposeImage(recorder)
    extractor = DictBackboneExtractor(transposed.observation_space, **spec).eval()  # type: ignore[arg-type]
    assert not head.extractor.load_state_dict(extractor.image.state_dict(), strict=False).missing_keys
    assert extractor.features_dim == head.features_dim
    features = np.asarray(venv.reset())
    obs = transposed.transpose_observations(recorder.obs)
    with torch.no_grad():
        tensors = {k: torch.as_tensor(v) for k, v in obs.items()}
        reference = extractor(preprocess_obs(tensors, transposed.observation_space))  # type: ignore[arg-type]
        torch.testing.assert_close(head(torch.as_tensor(features)), reference, atol=1e-5, rtol=1e-5)
