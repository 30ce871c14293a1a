"""Multi-task pretraining (`pretrain.tasks`): padded components never touch the env nor get gradient, the
heads of tasks absent from a batch stay put, a run on two tiny tasks logs per-task returns and transfers
to the held-out task, and bad sections are one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tiny import set_args
from user_envs import PlanarPointMass, PointMass

from agents.multitask import MultiTaskPolicy, TaskHeads
from simreal.cli import main
from simreal.config import load_config
from simreal.simulation.multitask import Padded, TaskLayout, TaskSwitching
from simreal.training.engine.artifacts import load_policy
from simreal.training.engine.context import Context
from simreal.training.methods.multitask.stages import multitask_context


def test_a_padded_action_component_never_changes_the_trajectory() -> None:
    layout = TaskLayout(obs_dim=4, act_dim=3, tasks=2, index=1)
    runs = []
    for junk in (0.0, 0.9):
        env = Padded(PointMass(), layout)
        obs, _ = env.reset(seed=3)
        seen = [obs]
        for t in range(20):
            seen.append(env.step(np.array([np.sin(t), junk, -junk], dtype=np.float32))[0])
        runs.append(np.array(seen))
    assert np.array_equal(runs[0], runs[1])
    assert runs[0].shape == (21, 6) and np.all(runs[0][:, 2:4] == 0) and np.all(runs[0][:, 4:] == [0, 1])


def _policy(heads: str) -> MultiTaskPolicy:
    obs = gym.spaces.Box(-np.inf, np.inf, shape=(6,), dtype=np.float32)
    act = gym.spaces.Box(-1, 1, shape=(2,), dtype=np.float32)
    masks = [[1.0, 0.0], [1.0, 1.0]]
    return MultiTaskPolicy(obs, act, lambda _: 1e-3, action_masks=masks, task_slice=[4, 6], heads=heads)


def _batch(task: int, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(task)
    obs = torch.randn(n, 6, generator=gen)
    obs[:, 4:] = 0.0
    obs[:, 4 + task] = 1.0
    return obs, torch.randn(n, 2, generator=gen)


def test_padded_components_get_no_gradient_from_the_masked_loss() -> None:
    policy = _policy("shared")
    obs, actions = _batch(task=0)  # task 0 uses the first action component only
    _, log_prob, entropy = policy.evaluate_actions(obs, actions)
    assert entropy is not None
    (-(log_prob.mean() + 0.1 * entropy.mean())).backward()
    assert policy.action_net.weight.grad is not None and policy.log_std.grad is not None
    assert torch.all(policy.action_net.weight.grad[1] == 0) and policy.log_std.grad[1] == 0
    assert torch.any(policy.action_net.weight.grad[0] != 0) and policy.log_std.grad[0] != 0


def test_the_heads_of_tasks_absent_from_a_batch_are_unchanged() -> None:
    policy = _policy("per_task")
    assert isinstance(policy.action_net, TaskHeads)
    heads = list(policy.action_net.heads)
    before = [p.detach().clone() for p in heads[1].parameters()]
    trained = [p.detach().clone() for p in heads[0].parameters()]
    for _ in range(3):  # Adam steps on task-0 batches only
        obs, actions = _batch(task=0)
        policy.optimizer.zero_grad()
        _, log_prob, _ = policy.evaluate_actions(obs, actions)
        (-log_prob.mean()).backward()
        policy.optimizer.step()
    assert all(torch.equal(b, p) for b, p in zip(before, heads[1].parameters(), strict=True))
    assert not all(torch.equal(b, p) for b, p in zip(trained, heads[0].parameters(), strict=True))


def test_task_switching_draws_by_weight_and_reports_each_task_return() -> None:
    layout = TaskLayout(obs_dim=4, act_dim=2, tasks=2)
    env = gym.wrappers.TimeLimit(
        TaskSwitching([PointMass, PlanarPointMass], ["a", "b"], layout, [3, 1], 0), 5
    )
    env.reset(seed=0)
    seen: dict[str, int] = {}
    for _ in range(200):
        _, _, _, truncated, info = env.step(np.zeros(2, dtype=np.float32))
        if truncated:
            assert "multitask" not in info or info["multitask"]["task"] in ("a", "b")
            env.reset()
        task = env.unwrapped.names[env.unwrapped.current]
        seen[task] = seen.get(task, 0) + 1
    assert seen["a"] > seen["b"]


POINT: dict[str, Any] = {"imports": ["user_envs"], "max_episode_steps": 30}


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("multitask")
    tasks = {
        "mt_point": {**POINT, "env": "user_envs:PointMass"},
        "mt_planar": {**POINT, "env": "user_envs:PlanarPointMass"},
        "mt_heavy": {**POINT, "env": "user_envs:PointMass", "env_kwargs": {"mass": 3.0}},
        "mt_goal": {
            **POINT,
            "env": "user_envs:GoalPointMass",
            "targets": {"real": {"env": "user_envs:GoalPointMass", "env_kwargs": {"mass": 1.5}}},
        },
    }
    for name, data in tasks.items():
        (root / f"{name}.yaml").write_text(yaml.safe_dump(data))
    config = {
        "experiment": "mt",
        "task": "mt_goal.yaml",
        "target": "real",
        "seeds": [0],
        "pretrain": {"timesteps": 256, "tasks": ["mt_point.yaml", {"task": "mt_planar.yaml", "weight": 2}]},
        "multitask": {"heads": "per_task"},
        "finetune": {"timesteps": 128},
    }
    (root / "exp.yaml").write_text(yaml.safe_dump(config))
    return root / "exp.yaml"


def test_a_run_logs_per_task_returns_and_transfers_to_the_held_out_task(
    experiment: Path, tmp_path: Path
) -> None:
    args = set_args(tmp_path, "pretrain.nominal_baseline=false", reference=False)
    assert main(["run", str(experiment), *args]) == 0
    run = tmp_path / "mt"
    report = json.loads((run / "report.json").read_text())
    assert {"zeroshot_multitask", "finetune_multitask", "finetune", "scratch"} <= set(report["variants"])
    stage = run / "pretrain_multitask" / "seed0"
    summary = json.loads((stage / "multitask.json").read_text())
    assert summary["tasks"] == ["MtPoint", "MtPlanar"] and summary["held_out_as"] == "MtPoint"
    assert set(summary["held_out_returns"]) == {"MtPoint"}  # the one task with the held-out action size
    assert set(summary["evaluation"]) == {"MtPoint", "MtPlanar"}
    events = EventAccumulator(str(stage))
    events.Reload()
    assert {"multitask/MtPoint/return", "multitask/MtPlanar/return"} <= set(events.Tags()["scalars"])
    meta = load_policy(stage / "policy.pt").meta
    assert meta["algo"]["policy"] == "agents.multitask:MultiTaskPolicy" and meta["pretrained_for"] == "MtGoal"
    assert "## Multi-task pretraining" in (run / "report.md").read_text()
    # the held-out task's id is the experiment's choice at transfer time, not the artifact's
    cfg = load_config(run / "config.yaml", ["multitask.held_out_as=MtPlanar"])
    layout = multitask_context(Context(cfg, run, torch.device("cpu"), False)).cfg.observation.layout
    assert layout is not None and layout.index == 1 and meta["observation"]["layout"]["index"] == 0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["pretrain.tasks=[mt_goal.yaml, mt_point.yaml]"], "pretrain.tasks: MtGoal is the experiment's task"),
        (["pretrain.tasks=[mt_point.yaml]"], "multitask.conditioning: onehot with one task says nothing"),
        (["multitask.conditioning=none"], "multitask.heads: per_task needs the task's id"),
    ],
)
def test_a_bad_section_is_one_line(
    experiment: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], override: list[str], message: str
) -> None:
    args = set_args(tmp_path, *override, reference=False)
    assert main(["run", str(experiment), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not any(tmp_path.iterdir())


def test_a_discrete_task_beside_continuous_ones_is_one_line_before_anything_is_written(
    experiment: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cart = {"task": {"name": "MtCart", "env": "CartPole-v1"}}
    args = set_args(tmp_path, f"pretrain.tasks=[mt_point.yaml, {json.dumps(cart)}]", reference=False)
    assert main(["run", str(experiment), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "pretrain.tasks: task 1's action: a flat Box is needed" in err and len(err.splitlines()) == 1, err
    assert not any(tmp_path.iterdir())


def test_the_nearest_pretraining_task_lends_the_held_out_task_its_id(
    experiment: Path, tmp_path: Path
) -> None:
    args = set_args(
        tmp_path,
        "pretrain.nominal_baseline=false",
        "pretrain.tasks=[mt_point.yaml, mt_heavy.yaml]",
        "multitask.heads=shared",
        "scratch=false",
        "algo.kwargs.n_steps=64",
        "algo.kwargs.batch_size=32",
        reference=False,
    )
    assert main(["run", str(experiment), *args]) == 0
    stage = tmp_path / "mt" / "pretrain_multitask" / "seed0"
    summary = json.loads((stage / "multitask.json").read_text())
    returns = summary["held_out_returns"]
    assert set(returns) == {"MtPoint", "MtHeavy"} and summary["held_out_as"] == max(returns, key=returns.get)
    index = ["MtPoint", "MtHeavy"].index(summary["held_out_as"])
    assert load_policy(stage / "policy.pt").meta["observation"]["layout"]["index"] == index
    used = load_policy(tmp_path / "mt" / "finetune_multitask" / "seed0" / "policy.pt").meta
    assert used["observation"]["layout"]["index"] == index
    # deployed: the exported policy's description says where the robot's observation and id go
    assert (
        main(
            [
                "export",
                str(tmp_path / "mt" / "finetune_multitask" / "seed0" / "policy.pt"),
                "--format",
                "onnx",
            ]
        )
        == 0
    )
    described = json.loads(
        (tmp_path / "mt" / "finetune_multitask" / "seed0" / "policy.onnx.json").read_text()
    )
    layout = described["observation"]["task_layout"]
    assert layout["index"] == index and f"1 at position {index}" in layout["observation"]
