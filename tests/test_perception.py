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
from simreal.training.engine.artifacts import load_policy

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


@pytest.mark.parametrize("cached", [True, False], ids=["cached", "in-policy"])
def test_camera_with_action_history_is_a_dict_the_policy_reads_as_recorded(
    tmp_path: Path, cached: bool
) -> None:
    """Frames + the last 2 actions through pretraining, fine-tuning on the latency target and evaluation:
    the artifact records the Dict the env gives and (cached) where each entry sits in what the policy
    reads; normalization applies to those features, and the frozen backbone is never trained."""
    norm = "algo.normalize_obs=true" if cached else "algo.normalize_obs=false"
    perception = (
        "perception={backbone: small_cnn, weights: null, features_dim: 16, readout: diff, "
        f"cache_features: {str(cached).lower()}}}"
    )
    overrides = [*PIXELS, perception, "observation.action_history=2", norm, "target=latency"]
    assert main(["run", *set_args(tmp_path, *overrides)]) == 0
    run = tmp_path / "quickstart"
    frozen: dict[str, dict[str, torch.Tensor]] = {}
    for variant in ("pretrain_randomized", "finetune", "scratch"):
        art = load_policy(run / variant / "seed0/policy.pt")
        meta = art.meta
        policy = art.states["policy"]
        frozen[variant] = art.backbone or {k: v for k, v in policy.items() if ".backbone." in k}
        env_space = meta["env_observation_space"]
        assert env_space["type"] == "Dict" and set(env_space["spaces"]) == {"image", "action_history"}
        assert env_space["spaces"]["action_history"]["shape"] == [2]  # 2 steps of a 1-d action
        if cached:
            layout = meta["observation_layout"]
            width = layout["image"][1]
            assert layout == {"image": [0, width], "action_history": [width, width + 2]}
            assert meta["observation_space"]["shape"] == [width + 2]
            assert art.obs_rms is not None and art.obs_rms.mean.shape == (width + 2,)
        else:
            assert "observation_layout" not in meta and meta["observation_space"]["type"] == "Dict"
            assert art.obs_rms is None
    src, ft = frozen["pretrain_randomized"], frozen["finetune"]
    assert src and src.keys() == ft.keys()
    assert all(torch.equal(src[n], ft[n]) for n in src), "the frozen backbone changed in fine-tuning"
    out = tmp_path / "eval.json"
    policy = str(run / "finetune/seed0/policy.pt")
    env = "simreal/InvertedPendulum-Pixels-Target-Latency-v0"
    assert main(["evaluate", policy, "--env", env, "--episodes", "1", "--json", str(out)]) == 0
    assert len(json.loads(out.read_text())["returns"]) == 1
    if cached:
        _exported_graph_matches_predict(run / "finetune/seed0/policy.pt", env)
    _batched_evaluation_equals_the_one_env_loop(run / "pretrain_randomized/seed0/policy.pt", env)


def _batched_evaluation_equals_the_one_env_loop(policy: Path, env_id: str) -> None:
    """Episodes run side by side (one policy batch and, cached, one backbone batch per step, frames
    reused) return what the one-env loop returns on the same seeds, episode by episode."""
    import gymnasium as gym
    import numpy as np

    from simreal.training.engine.evaluation import evaluate
    from simreal.training.engine.sb3.loading import load_for_env

    loaded = load_for_env(policy, lambda: gym.make(env_id), torch.device("cpu"), 0)
    one = evaluate(loaded.model, loaded.make_env, 5, 7, loaded.obs_rms, loaded.encoder, n_envs=1)
    side_by_side = evaluate(loaded.model, loaded.make_env, 5, 7, loaded.obs_rms, loaded.encoder, n_envs=3)
    np.testing.assert_array_equal(side_by_side.lengths, one.lengths)
    np.testing.assert_allclose(side_by_side.returns, one.returns, rtol=1e-6)
    assert len(set(one.lengths.tolist())) > 1  # the episodes differ: which env ran which one matters


def _exported_graph_matches_predict(policy: Path, env_id: str) -> None:
    """`simreal export` of a pixel policy: one ONNX graph from uint8 frames and the action history to
    the action, equal to `predict()` on the cached features of real target frames; the JSON documents
    the inputs in the graph's order and the layout the policy reads."""
    import gymnasium as gym
    import numpy as np
    import onnxruntime as ort

    from simreal.training.engine.evaluation import normalize
    from simreal.training.engine.export import ExportError, export_policy, sidecar_path
    from simreal.training.engine.sb3.loading import load_for_env

    onnx_path = export_policy(policy, "onnx")
    info = json.loads(sidecar_path(onnx_path).read_text())
    inputs = info["input"]["inputs"]
    assert [i["name"] for i in inputs] == ["image", "action_history"]
    assert inputs[0]["dtype"] == "uint8" and inputs[0]["shape"] == ["batch", 64, 64, 9]
    assert inputs[1]["shape"] == ["batch", 2] and inputs[1]["neutral_action"] == [0.0]
    assert info["input"]["layout"] == load_policy(policy).meta["observation_layout"]
    loaded = load_for_env(policy, lambda: gym.make(env_id), torch.device("cpu"), 0)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    env = loaded.make_env()
    obs, _ = env.reset(seed=3)
    worst = 0.0
    for _ in range(12):
        want, _ = loaded.model.predict(
            normalize(loaded.encoder.encode(obs), loaded.obs_rms), deterministic=True
        )
        feed = {"image": obs["image"][None], "action_history": obs["action_history"][None]}
        got = session.run(None, feed)[0][0]
        worst = max(worst, float(np.max(np.abs(got - want))))
        obs, *_ = env.step(want)
    env.close()
    assert worst < 1e-4
    with pytest.raises(ExportError, match="a pixel policy exports its frozen encoder with it"):
        export_policy(policy, "safetensors")


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
        (
            ["pixels=true", "algo.normalize_obs=true"],
            "algo.normalize_obs: with pixels it normalizes cached backbone features",
        ),
        (
            ["pixels=true", "perception={cache_features: false}", "algo.normalize_obs=true"],
            "algo.normalize_obs: with pixels it normalizes cached backbone features",
        ),
        (
            ["pixels=true", "perception={readout: deltas}"],
            "perception.readout: Input should be 'stack' or 'diff'",
        ),
        (
            ["pixels=true", "perception={}", "observation.privileged=true"],
            "observation.privileged/history_window: not with image observations",
        ),
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
    from simreal.training.engine.sb3 import transfer as tr

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
