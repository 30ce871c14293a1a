"""`finetune.lr_schedule: adaptive`: the rate follows each update's KL, within its bounds, and the rate
logged is the one the optimizer used."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import PPO, SAC, TD3
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tiny import set_args

from simreal.cli import main
from simreal.config import load_config
from simreal.schema import ConfigError
from simreal.training.engine.sb3.adaptive import KLAdaptiveRate, OffPolicyKLRate
from simreal.training.engine.schedules import AdaptiveRate
from simreal.training.methods.finetune import learning_rate


def test_the_rule_raises_under_half_the_target_lowers_over_twice_and_holds_its_bounds() -> None:
    rate = AdaptiveRate(start=1e-4, target_kl=0.01, low=5e-5, high=2e-4)
    assert rate.update(0.001) == pytest.approx(1.5e-4)  # under target / 2: faster
    assert rate.update(0.001) == pytest.approx(2e-4)  # capped at the high bound
    assert rate.update(0.01) == pytest.approx(2e-4)  # inside [target / 2, 2 target]: unchanged
    assert rate.update(0.05) == pytest.approx(2e-4 / 1.5)  # over 2 x target: slower
    for _ in range(5):
        rate.update(1.0)
    assert rate.rate == pytest.approx(5e-5) and rate(0.3) == rate.rate  # floored; SB3 reads the rate


@pytest.mark.parametrize(("target_kl", "direction"), [(1e3, 1), (1e-12, -1)])
def test_kl_forced_low_raises_the_rate_forced_high_lowers_it(target_kl: float, direction: int) -> None:
    """A target KL far above any real update's KL raises the rate at every update, one far below lowers
    it; the optimizer trains at the rate the schedule reached, which is what TensorBoard shows."""
    schedule = AdaptiveRate(start=1e-4, target_kl=target_kl, low=1e-5, high=1e-3)
    model = PPO(
        "MlpPolicy",
        gym.make("Pendulum-v1"),
        learning_rate=schedule,
        n_steps=64,
        batch_size=32,
        n_epochs=2,
        seed=0,
        device="cpu",
    )
    callback = KLAdaptiveRate(schedule)
    model.learn(64 * 6, callback=callback)
    rates = [r for _, r, _ in callback.history]
    assert len(rates) == 5 and all(k >= 0 for _, _, k in callback.history)
    steps = [b - a for a, b in zip([1e-4, *rates], rates, strict=False)]
    assert all(direction * s > 0 or r in (1e-5, 1e-3) for s, r in zip(steps, rates, strict=True))
    assert 1e-5 <= min(rates) and max(rates) <= 1e-3
    assert model.policy.optimizer.param_groups[0]["lr"] == pytest.approx(rates[-1])


def _adaptive_run(out: Path, *overrides: str) -> list[list[float]]:
    """A tiny run whose fine-tuning's KL is always far under `target_kl`; the rate history it ended with."""
    args = set_args(
        out,
        "finetune.lr_schedule=adaptive",
        "finetune.target_kl=1000",  # every update's KL is far below: the rate climbs
        "finetune.timesteps=256",
        "evaluation.every_steps=128",
        "pretrain.nominal_baseline=false",
        "scratch=false",
        *overrides,
        reference=False,
    )
    assert main(["run", *args, "--seeds", "0"]) == 0
    final = json.loads((out / "quickstart/finetune/seed0/final.json").read_text())
    history: list[list[float]] = final["adaptive_rate"]["history"]
    return history


def test_an_adaptive_fine_tuning_reports_its_rate(tmp_path: Path) -> None:
    history = _adaptive_run(tmp_path, "finetune.lr_bounds=[0.05, 0.2]")  # climbs to its bound
    stage = tmp_path / "quickstart/finetune/seed0"
    rates = [r for _, r, _ in history]
    pretrain_lr = load_config().algo.pretrain_lr
    assert rates == sorted(rates) and rates[-1] == pytest.approx(0.2 * pretrain_lr)
    events = EventAccumulator(str(stage))
    events.Reload()
    assert [e.value for e in events.Scalars("finetune/learning_rate")] == pytest.approx(rates)
    report = json.loads((tmp_path / "quickstart/report.json").read_text())
    assert report["variants"]["finetune"]["learning_rate"]["final_per_seed"] == pytest.approx([rates[-1]])
    assert "steered its learning rate" in (tmp_path / "quickstart/report.md").read_text()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["finetune.lr_schedule=adaptive", "finetune.target_kl=0"], "finetune.target_kl"),
        (["finetune.lr_bounds=[1.0, 0.1]"], "finetune.lr_bounds: must be [low, high] factors"),
        (["finetune.lr_schedule=adaptive", "finetune.lr_bounds=[0.2, 1.0]"], "lies outside"),
        (
            ["finetune.lr_schedule=adaptive", "finetune.lr_warmup_fraction=0.2"],
            "finetune.lr_warmup_fraction: the adaptive rate",
        ),
    ],
)
def test_bad_adaptive_settings_are_one_line(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(overrides=overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("algo", [SAC, TD3])
@pytest.mark.parametrize(("target_kl", "direction"), [(1e3, 1), (1e-12, -1)])
def test_off_policy_windows_steer_the_rate_of_every_optimizer(
    algo: type[SAC] | type[TD3], target_kl: float, direction: int
) -> None:
    """SAC and TD3: the policy's change over each window moves the rate; the actor's, the critics' and
    SAC's entropy optimizers all train at the rate reached."""
    schedule = AdaptiveRate(start=1e-4, target_kl=target_kl, low=1e-5, high=1e-3)
    model = algo(
        "MlpPolicy",
        gym.make("Pendulum-v1"),
        learning_rate=schedule,
        learning_starts=32,
        batch_size=32,
        policy_kwargs={"net_arch": [16]},
        seed=0,
        device="cpu",
    )
    callback = OffPolicyKLRate(schedule, window=40)
    model.learn(200, callback=callback)
    rates = [r for _, r, _ in callback.history]
    assert len(rates) == 4 and all(k > 0 for _, _, k in callback.history)
    assert [s for s, _, _ in callback.history] == [32 + 1 + 40 * (i + 1) + i for i in range(4)]
    assert all(direction * (b - a) > 0 for a, b in zip([1e-4, *rates], rates, strict=False))
    optimizers = [model.actor.optimizer, model.critic.optimizer]
    if isinstance(model, SAC):
        optimizers.append(model.ent_coef_optimizer)
    model.train(gradient_steps=1, batch_size=32)  # SB3 sets the rate from the schedule at every update
    assert all(o.param_groups[0]["lr"] == pytest.approx(rates[-1]) for o in optimizers)


def test_a_sac_fine_tuning_steers_its_rate_by_windows(tmp_path: Path) -> None:
    sac = ["algo.name=SAC", "algo.kwargs={batch_size: 32}", "algo.net_arch=[16]", "finetune.kl_window=64"]
    history = _adaptive_run(tmp_path, *sac)
    pretrain_lr = load_config(overrides=["algo.name=SAC", "algo.kwargs={batch_size: 32}"]).algo.pretrain_lr
    assert len(history) == 3 and history[-1][1] == pytest.approx(0.1 * pretrain_lr * 1.5**3)


def test_an_off_policy_window_must_fit_the_budget() -> None:
    sac = ["algo.name=SAC", "algo.kwargs={batch_size: 64}", "finetune.timesteps=1000"]
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[*sac, "finetune.lr_schedule=adaptive", "finetune.kl_window=1000"])
    assert "finetune.kl_window: 1,000 target steps after the first update at 64" in str(err.value)
    assert "\n" not in str(err.value)
    fits = load_config(overrides=[*sac, "finetune.lr_schedule=adaptive", "finetune.kl_window=936"])
    assert fits.finetune.kl_window == 936


def test_the_default_schedule_is_adaptive_on_policy_and_constant_off_policy() -> None:
    """Chosen on panels of random targets (BENCHMARKS.md); an explicit schedule always wins."""
    default = ["finetune.lr_schedule=null"]  # the quickstart names its schedule; the schema's default
    assert load_config(overrides=default).finetune_lr_schedule == "adaptive"  # the quickstart: PPO
    sac = [*default, "algo.name=SAC", "algo.kwargs={batch_size: 64}"]
    assert load_config(overrides=sac).finetune_lr_schedule == "constant"
    assert load_config(overrides=["finetune.lr_schedule=constant"]).finetune_lr_schedule == "constant"
    warm = load_config(overrides=[*default, "finetune.lr_warmup_fraction=0.2"])
    assert warm.finetune_lr_schedule == "constant"  # a warm-up asks for a fixed schedule
    # a user's rate outside the bounds: the default widens them to hold it, an explicit schedule refuses
    fast = load_config(overrides=[*default, "finetune.lr_factor=2.0"])
    rate = learning_rate(fast)
    assert isinstance(rate, AdaptiveRate) and rate.high == pytest.approx(2.0 * fast.algo.pretrain_lr)
    with pytest.raises(ConfigError, match="finetune.lr_bounds: the fine-tuning rate"):
        load_config(overrides=["finetune.lr_factor=2.0", "finetune.lr_schedule=adaptive"])


def test_the_rate_adapts_in_a_finetune_auto_race_and_goes_on_from_there_in_the_winner(tmp_path: Path) -> None:
    auto_cfg = "finetune.auto={candidates: {lr_factor: [0.05, 0.1]}, budget_fraction: 0.5, episodes: 2}"
    history = _adaptive_run(tmp_path, auto_cfg, "finetune.timesteps=1024", "algo.net_arch=[16, 16]")
    stage = tmp_path / "quickstart/finetune/seed0"
    search = json.loads((stage / "auto.json").read_text())
    pretrain_lr = load_config().algo.pretrain_lr
    start, high = search["winner"]["lr_factor"] * pretrain_lr, 1.0 * pretrain_lr  # lr_bounds' top: 1x
    steps = [s for s, _, _ in history]
    rates = [r for _, r, _ in history]
    assert steps == sorted(steps) and steps[0] <= search["exploration_steps"]  # first measured in the race
    # one clock, the stage's: an update in the race lies inside one of the winner's own rounds, which
    # follow the other candidates' rounds in turn; the winner's updates after the race lie past them
    per, rounds, spent = search["steps_per_round"], [], 0
    for r in range(1, search["rounds"] + 1):
        for c in search["candidates"]:
            if c["dropped_in_round"] is None or c["dropped_in_round"] >= r:
                if c["setting"] == search["winner"]:
                    rounds.append((spent, spent + per))
                spent += per
    assert spent == search["exploration_steps"] and len(rounds) >= 2
    for s in steps:
        assert s > spent or any(lo <= s <= hi for lo, hi in rounds), (s, rounds)
    # every update the winner made in the race moved its rate, its last round's too (measured as it ends)
    rollout = 64  # tiny.TINY's n_steps
    assert sum(s <= spent for s in steps) == len(rounds) * per // rollout
    assert rounds[-1][1] in steps
    # every update's KL is far under target_kl: from the winner's first update on, x1.5 each, to the top
    assert rates == pytest.approx([min(start * 1.5 ** (k + 1), high) for k in range(len(rates))])


def test_a_stage_resumed_right_after_the_race_keeps_the_winners_rate(tmp_path: Path) -> None:
    from simreal.training.engine.evaluation import EvalResult
    from simreal.training.engine.sb3.checkpoints import load_checkpoint
    from simreal.training.methods.finetune import _continue_winner
    from simreal.training.methods.finetune.auto import SearchResult

    def model() -> PPO:
        return PPO(
            "MlpPolicy",
            gym.make("Pendulum-v1"),
            n_steps=64,
            learning_rate=AdaptiveRate(1e-4, 0.01, 1e-5, 1e-3),
        )

    winner = model()
    steer = KLAdaptiveRate(winner.learning_rate)
    steer.load({"rate": 3.4e-4, "history": [[64, 1.5e-4, 0.001], [128, 3.4e-4, 0.002]]})
    at_start = EvalResult(np.zeros(2), np.zeros(2, int), np.full(2, np.nan))
    found = SearchResult(None, winner, 128, at_start, {}, steer)  # type: ignore[arg-type]
    stage = model()
    _continue_winner(stage, found, tmp_path, 64)
    _, extra = load_checkpoint(tmp_path / "checkpoint.pt", model())
    assert extra["callbacks"]["adaptive_rate"] == steer.state()
