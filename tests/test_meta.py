"""Meta-learning (`meta:`): Reptile's outer update, an inner loop that is the configured fine-tuning
(frozen layers bit-identical), the stages inside a run with the simulation steps reported, and bad
sections refused at config load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny import set_args

from simreal.cli import main
from simreal.config import load_config
from simreal.training.engine.artifacts import load_policy
from simreal.training.engine.context import Context
from simreal.training.methods.meta.reptile import cloned, reptile_update
from simreal.training.methods.meta.stages import inner_model, meta_task, pretrain_meta

TINY_META = ["meta.tasks=3", "meta.batch=2", "meta.inner_steps=64", "meta.timesteps=256"]


def test_the_outer_update_is_the_mean_inner_change_times_the_step() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    theta = cloned(net.state_dict())
    adapted = []
    for k in range(3):  # three "inner loops": a few SGD steps each on their own data
        net.load_state_dict(theta)
        opt = torch.optim.SGD(net[2].parameters(), lr=0.1)  # the first layer frozen
        for _ in range(4):
            x = torch.randn(8, 3, generator=torch.Generator().manual_seed(k))
            loss = (net(x) - k).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        adapted.append(cloned(net.state_dict()))
    new = reptile_update(theta, adapted, 0.3)
    for key in theta:
        mean_change = sum(a[key] - theta[key] for a in adapted) / 3
        assert torch.allclose(new[key], theta[key] + 0.3 * mean_change, atol=1e-7)
    assert torch.equal(new["0.weight"], theta["0.weight"]) and torch.equal(new["0.bias"], theta["0.bias"])
    assert not torch.equal(new["2.weight"], theta["2.weight"])


def test_the_inner_loop_is_the_configured_fine_tuning(tmp_path: Path) -> None:
    cfg = load_config(
        None,
        [
            "finetune.freeze_layers=1",
            "algo.kwargs.n_steps=64",
            "algo.kwargs.batch_size=32",
            "algo.net_arch=[16,16]",
            *TINY_META,
        ],
    )
    ctx = Context(cfg, tmp_path, torch.device("cpu"), progress_bar=False)
    task = meta_task(ctx, seed=0)
    assert len(task.spec.targets) == 3 and task.name.startswith(f"{cfg.task.name}Meta")
    model, venv = inner_model(ctx, task.target_id("p0"), 1, _fresh_theta(ctx), None)
    before = cloned(model.policy.state_dict())
    assert model.lr_schedule(1.0) == pytest.approx(cfg.finetune_lr)  # the fine-tuning rate
    model.learn(128)
    after = model.policy.state_dict()
    frozen = [k for k in before if "mlp_extractor.policy_net.0" in k or "mlp_extractor.value_net.0" in k]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert not torch.equal(before["action_net.weight"], after["action_net.weight"])
    venv.close()


def _fresh_theta(ctx: Context) -> dict[str, torch.Tensor]:
    from simreal.training.methods.meta.stages import _shell

    model, venv = _shell(ctx, 0, None)
    venv.close()
    return cloned(model.policy.state_dict())


def test_a_run_reports_the_meta_variants_and_their_simulation_steps(tmp_path: Path) -> None:
    args = set_args(tmp_path, "pretrain.nominal_baseline=false", *TINY_META, reference=False)
    assert main(["run", *args, "--seeds", "0", "--set", "experiment=meta"]) == 0
    run = tmp_path / "meta"
    report = json.loads((run / "report.json").read_text())
    assert {"zeroshot_meta", "finetune_meta"} <= set(report["variants"])
    summary = json.loads((run / "pretrain_meta" / "seed0" / "meta.json").read_text())
    assert summary["outer_steps"] == 2 and summary["meta_steps"] == 256
    assert summary["sim_steps"] == 128 + 256  # the randomized policy's pretraining, then meta-training
    assert len(summary["history"]) == 2 and all(len(h["tasks"]) == 2 for h in summary["history"])
    assert (
        report["meta_learning"]["sim_steps"] == 384 and report["meta_learning"]["randomized_sim_steps"] == 128
    )
    assert "## Meta-learning" in (run / "report.md").read_text()
    steps = report["variants"]["finetune_meta"]["target_steps"]["per_seed"][0]
    assert steps["train"] == report["variants"]["finetune"]["target_steps"]["per_seed"][0]["train"]

    # an interrupted stage resumes from its per-outer-step checkpoint to the same initialization
    stage = run / "pretrain_meta" / "seed0"
    first = load_policy(stage / "policy.pt")
    (stage / "policy.pt").unlink()
    cfg = load_config(run / "config.yaml")
    again = pretrain_meta(
        Context(cfg, run, torch.device("cpu"), False), 0, run / "pretrain_randomized" / "seed0" / "policy.pt"
    )
    second = load_policy(again)
    assert all(
        torch.equal(a, b) for a, b in zip(first.tensors.values(), second.tensors.values(), strict=True)
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["meta.inner_steps=32"], "meta.inner_steps: 32 is less than one rollout of PPO (64 sim steps"),
        (["meta.inner_steps=64", "meta.timesteps=100"], "meta.timesteps: 100 sim steps hold no outer step"),
    ],
)
def test_a_bad_section_is_one_line_at_config_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], overrides: list[str], message: str
) -> None:
    args = set_args(tmp_path, *overrides, reference=False)
    assert main(["run", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not any(tmp_path.iterdir())
