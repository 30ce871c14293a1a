"""Transfer: weights copied, frozen parameters bit-identical, optimizers on trainable params at the set LR."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest
import torch
import torch.nn as nn
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

import simreal  # noqa: F401 - registers the simreal/ ids
from agents.algorithms import make_model
from simreal.training.engine.artifacts import (
    ArtifactError,
    check_spaces,
    load_policy,
    load_torch_state,
    save_policy,
)
from simreal.training.engine.sb3 import transfer as tr
from simreal.training.engine.schedules import WarmupDecaySchedule

ENV = "simreal/InvertedPendulum-v0"
TARGET = "simreal/InvertedPendulum-Target-Latency-v0"
SMALL = {
    "PPO": {"n_steps": 64, "batch_size": 32, "n_epochs": 2},
    "SAC": {"learning_starts": 32, "buffer_size": 2000, "batch_size": 32},
    "TD3": {"learning_starts": 32, "buffer_size": 2000, "batch_size": 32},
}


class BatchNormExtractor(BaseFeaturesExtractor):
    """A features extractor with BatchNorm and Dropout, to check frozen modules stay in eval mode."""

    def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 16) -> None:
        super().__init__(observation_space, features_dim)
        self.net = nn.Sequential(
            nn.Linear(observation_space.shape[0], features_dim),
            nn.BatchNorm1d(features_dim),
            nn.Dropout(0.5),
            nn.ReLU(),
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


def _model(algo: str, env_id: str, lr: object, extractor: bool = False, seed: int = 0):
    policy_kwargs: dict[str, object] = {"net_arch": [32, 32]}
    if extractor:
        policy_kwargs["features_extractor_class"] = BatchNormExtractor
    return make_model(algo, "MlpPolicy", gym.make(env_id), lr, policy_kwargs, SMALL[algo], "cpu", seed)


def _pretrained(algo: str, tmp_path: Path, extractor: bool = False) -> Path:
    model = _model(algo, ENV, 3e-4, extractor)
    model.learn(128)
    path = tmp_path / f"{algo}.pt"
    save_policy(model, None, {"algo": algo}, path)
    return path


def _transferred(algo: str, source: Path, lr: float, k: int, extractor: bool = False):
    art = load_policy(source)
    model = _model(algo, TARGET, WarmupDecaySchedule(lr), extractor, seed=1)
    load_torch_state(model, art.states, art.tensors, include_optimizers=False)
    tr.freeze_features(model)
    tr.freeze_layers(model, k)
    tr.rebuild_optimizers(model)
    return model, art


@pytest.mark.parametrize("algo", ["PPO", "SAC", "TD3"])
def test_frozen_parameters_are_bit_identical_after_finetuning(algo: str, tmp_path: Path) -> None:
    source = _pretrained(algo, tmp_path, extractor=True)
    model, art = _transferred(algo, source, 1e-3, k=1, extractor=True)
    frozen = tr.frozen_parameter_names(model)
    assert any("features_extractor" in n for n in frozen) and len(frozen) > 4
    before = {n: p.detach().clone() for n, p in model.policy.named_parameters()}
    bn_before = {
        n: b.clone() for n, b in model.policy.named_buffers() if "running" in n and "target" not in n
    }
    for name, value in before.items():  # weights really were copied from the source
        assert torch.equal(value, art.states["policy"][name]), name
    model.learn(400 if algo == "PPO" else 150)
    after = dict(model.policy.named_parameters())
    for name in frozen:  # target networks track the online ones by Polyak averaging: not trained, not checked
        if "_target" not in name:
            assert torch.equal(after[name], before[name]), f"frozen {name} changed"
    changed = [
        n for n in before if n not in frozen and "target" not in n and not torch.equal(after[n], before[n])
    ]
    assert changed, "nothing trained"
    for name, value in bn_before.items():
        assert torch.equal(dict(model.policy.named_buffers())[name], value), f"BatchNorm stats {name} moved"
    model.policy.set_training_mode(True)
    extractor = (
        model.policy.actor.features_extractor
        if hasattr(model.policy, "actor")
        else model.policy.features_extractor
    )
    extractor(torch.zeros(4, 4))
    assert not extractor.training, "frozen extractor left eval mode"


@pytest.mark.parametrize("algo", ["PPO", "SAC"])
def test_optimizers_hold_only_trainable_parameters(algo: str, tmp_path: Path) -> None:
    model, _ = _transferred(algo, _pretrained(algo, tmp_path), 1e-4, k=1)
    total = sum(p.numel() for n, p in model.policy.named_parameters() if "target" not in n)
    frozen = sum(p.numel() for p in model.policy.parameters() if not p.requires_grad)
    trainable = tr.trainable_parameter_count(model)
    ent = 1 if algo == "SAC" else 0  # SAC's entropy coefficient lives outside the policy
    assert 0 < trainable - ent < total
    expected_frozen = sum(
        p.numel() for n, p in model.policy.named_parameters() if not p.requires_grad and "target" not in n
    )
    assert trainable - ent == total - expected_frozen
    for opt in tr.optimizers(model):
        for group in opt.param_groups:
            assert all(p.requires_grad for p in group["params"])
    assert frozen > 0


@pytest.mark.parametrize("algo", ["PPO", "SAC"])
def test_optimizer_uses_the_configured_learning_rate(algo: str, tmp_path: Path) -> None:
    model, _ = _transferred(algo, _pretrained(algo, tmp_path), 3e-5, k=0)
    seen: list[float] = []
    opt = model.policy.optimizer if algo == "PPO" else model.policy.actor.optimizer
    opt.register_step_pre_hook(lambda o, *_: seen.append(o.param_groups[0]["lr"]))
    model.learn(256)
    assert seen and all(lr == pytest.approx(3e-5) for lr in seen)


def test_warmup_and_decay_schedule_reaches_the_optimizer(tmp_path: Path) -> None:
    art = load_policy(_pretrained("PPO", tmp_path))
    schedule = WarmupDecaySchedule(1e-4, "linear", warmup_fraction=0.5)
    model = _model("PPO", TARGET, schedule)
    load_torch_state(model, art.states, art.tensors, include_optimizers=False)
    tr.rebuild_optimizers(model)
    seen: list[float] = []
    model.policy.optimizer.register_step_pre_hook(lambda o, *_: seen.append(o.param_groups[0]["lr"]))
    model.learn(512)
    assert seen[0] < 0.6e-4  # still warming up
    assert max(seen) == pytest.approx(1e-4, rel=0.3) and seen[-1] < max(seen)


def test_freeze_layers_beyond_network_depth_is_a_clear_error(tmp_path: Path) -> None:
    model = _model("PPO", ENV, 1e-4)
    with pytest.raises(ValueError, match=r"finetune.freeze_layers: 3 exceeds the 2 hidden layers"):
        tr.freeze_layers(model, 3)


def test_mismatched_spaces_name_both_spaces(tmp_path: Path) -> None:
    art = load_policy(_pretrained("PPO", tmp_path))
    other = gym.make("simreal/Reacher-v0")
    with pytest.raises(
        ArtifactError, match=r"observation spaces do not match: source Box\(shape=\(4,\).*\(10,\)"
    ):
        check_spaces(art.meta, other.observation_space, other.action_space)


def test_reinit_heads_changes_only_heads(tmp_path: Path) -> None:
    model, art = _transferred("PPO", _pretrained("PPO", tmp_path), 1e-4, k=0)
    tr.reinit_heads(model, seed=0)
    state = model.policy.state_dict()
    assert not torch.equal(state["action_net.weight"], art.states["policy"]["action_net.weight"])
    assert torch.equal(
        state["mlp_extractor.policy_net.0.weight"], art.states["policy"]["mlp_extractor.policy_net.0.weight"]
    )


def test_an_action_std_floor_raises_only_a_shrunk_std() -> None:
    model = _model("PPO", "Pendulum-v1", 1e-4)
    with torch.no_grad():
        model.policy.log_std.fill_(-1.0)  # std 0.37, as a policy that shrank its noise in the source
    assert tr.floor_action_std(model, 1.0) == 1
    assert torch.equal(model.policy.log_std, torch.zeros(1))
    assert tr.floor_action_std(model, 0.5) == 0 and torch.equal(model.policy.log_std, torch.zeros(1))
    assert tr.floor_action_std(_model("SAC", "Pendulum-v1", 1e-4), 1.0) == 0  # no state-independent std


def test_an_action_std_floor_is_for_gaussian_on_policy_algorithms() -> None:
    from simreal.config import load_config
    from simreal.schema import ConfigError

    sac = ["algo.name=SAC", "algo.kwargs={batch_size: 64}", "finetune.action_std_floor=1.0"]
    with pytest.raises(
        ConfigError, match="finetune.action_std_floor: a Gaussian policy's std; SAC is off-policy"
    ):
        load_config(overrides=sac)
    assert load_config(overrides=["finetune.action_std_floor=1.0"]).finetune.action_std_floor == 1.0
