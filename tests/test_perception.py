"""Pixels through the pipeline: cached frozen backbones, saved encoder state, AdaBN, config checks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from tiny import set_args

from simreal.cli import main
from simreal.config import load_config
from simreal.schema import ConfigError

PIXELS = [
    "pixels=true",
    "pretrain.nominal_baseline=false",
    "observation.action_history=0",
    "seeds=[0]",
    "workers=1",
]


def _run(tmp_path: Path, perception: str) -> Path:
    assert main(["run", *set_args(tmp_path, *PIXELS, perception)]) == 0
    return tmp_path / "quickstart"


def _backbone(run: Path, variant: str) -> dict[str, torch.Tensor]:
    data = torch.load(run / variant / "seed0/policy.pt", weights_only=True)
    assert data["backbone"] is not None
    return data["backbone"]


def test_random_init_small_cnn_is_saved_frozen_and_reloaded(tmp_path: Path) -> None:
    run = _run(tmp_path, "perception={backbone: small_cnn, weights: null, features_dim: 16}")
    src, ft = _backbone(run, "pretrain_randomized"), _backbone(run, "finetune")
    assert src.keys() == ft.keys()
    for name in src:
        assert torch.equal(src[name], ft[name]), f"frozen backbone {name} changed"
    report = json.loads((run / "report.json").read_text())
    assert {"finetune", "scratch", "zeroshot_randomized"} <= set(report["variants"])
    out = tmp_path / "eval.json"
    assert (
        main(
            [
                "evaluate",
                str(run / "finetune/seed0/policy.pt"),
                "--env",
                "simreal/InvertedPendulum-Pixels-Target-Latency-v0",
                "--episodes",
                "1",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    assert len(json.loads(out.read_text())["returns"]) == 1


def test_adabn_reestimates_batchnorm_on_target_frames(tmp_path: Path) -> None:
    run = _run(
        tmp_path,
        "perception={backbone: efficientnet_lite0, weights: imagenet, features_dim: 16, "
        "image_size: 32, adabn_frames: 32}",
    )
    src, ft = _backbone(run, "pretrain_randomized"), _backbone(run, "finetune")
    stats = [n for n in src if n.endswith("running_mean")]
    weights = [n for n in src if n.endswith(".weight")]
    assert stats and weights
    assert any(not torch.equal(src[n], ft[n]) for n in stats), "AdaBN left the BatchNorm statistics alone"
    assert all(torch.equal(src[n], ft[n]) for n in weights), "AdaBN must not touch weights"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["perception={backbone: small_cnn}"], "perception: a CNN backbone needs image observations"),
        (["pixels=true", "task=reacher", "target=shifted"], "pixels: task Reacher has no pixels: section"),
        (["pixels=true", "algo.normalize_obs=true"], "algo.normalize_obs: not for image observations"),
        (
            ["pixels=true", "perception={backbone: vgg}"],
            "perception.backbone: unknown backbone 'vgg' (allowed: ",
        ),
        (
            ["pixels=true", "perception={tap: stage9}"],
            "perception.tap: unknown tap 'stage9' for efficientnet_lite0 (allowed: stem, stage1,",
        ),
        (
            ["pixels=true", "perception={pool: 0}"],
            "perception.pool: Input should be greater than or equal to 1",
        ),
        (
            ["pixels=true", "perception={weights: /no/such.pt}"],
            "perception.weights: weights file /no/such.pt not",
        ),
    ],
)
def test_perception_config_errors(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, ["observation.action_history=0", *overrides])


def test_augmentation_applies_to_training_batches_only() -> None:
    import numpy as np
    from gymnasium import spaces

    from agents.extractors import BackboneExtractor

    space = spaces.Box(0, 255, (64, 64, 6), np.uint8)
    kwargs = {"backbone": "small_cnn", "weights": None, "features_dim": 8}
    torch.manual_seed(0)
    plain = BackboneExtractor(space, **kwargs)
    torch.manual_seed(0)
    augmented = BackboneExtractor(
        space, **kwargs, augmentation={"shift_pad": 4, "brightness": 0.3, "seed": 1}
    )
    obs = torch.randint(0, 256, (4, 64, 64, 6), dtype=torch.uint8)
    plain.eval()
    augmented.eval()
    assert torch.equal(plain(obs), augmented(obs)), "augmentation must be off when acting and evaluating"
    augmented.train()
    assert not torch.allclose(plain(obs), augmented(obs))
    with pytest.raises(ConfigError, match="augmentation: needs the images at training time"):
        load_config(None, ["observation.action_history=0", "pixels=true", "perception={augmentation: {}}"])


def test_unfrozen_backbone_blocks_train_at_their_own_learning_rate() -> None:
    import gymnasium as gym
    import numpy as np
    from gymnasium import spaces

    from agents.algorithms import make_model
    from agents.extractors import BackboneExtractor
    from simreal.training import transfer as tr

    class Frames(gym.Env):
        observation_space = spaces.Box(0, 255, (64, 64, 3), np.uint8)
        action_space = spaces.Box(-1, 1, (1,), np.float32)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return self.observation_space.sample(), {}

        def step(self, action):
            return self.observation_space.sample(), 0.0, False, False, {}

    kwargs = {"backbone": "small_cnn", "weights": None, "features_dim": 8, "unfreeze_last": 1}
    policy_kwargs = {"features_extractor_class": BackboneExtractor, "features_extractor_kwargs": kwargs}
    model = make_model(
        "PPO",
        "MlpPolicy",
        Frames(),
        1e-3,
        policy_kwargs,
        {"n_steps": 32, "batch_size": 16, "n_epochs": 1},
        "cpu",
        0,
    )
    assert tr.scale_backbone_lr(model, 0.1) > 0
    seen: list[list[float]] = []
    model.policy.optimizer.register_step_pre_hook(
        lambda o, *_: seen.append([g["lr"] for g in o.param_groups])
    )
    model.learn(64)
    assert len(seen) >= 4
    for rest, backbone in seen:
        assert rest == pytest.approx(1e-3) and backbone == pytest.approx(1e-4)
