"""Fine-tuning guards: critic warm-up, L2-SP, layer-wise LR decay, gradual unfreezing, keep-best."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from tiny import set_args

import simreal  # noqa: F401 - registers the simreal/ ids
from simreal.analysis.report import _search_line
from simreal.cli import main
from simreal.config import load_config
from simreal.schema import ConfigError
from simreal.training.engine.sb3 import guards
from simreal.training.engine.sb3 import transfer as tr
from simreal.training.methods.finetune import auto

ALGOS = {"PPO": PPO, "SAC": SAC, "TD3": TD3}
SHORT = {"PPO": {"n_steps": 64, "batch_size": 32, "n_epochs": 2}, "SAC": {}, "TD3": {}}


def _model(algo: str) -> BaseAlgorithm:
    """A small model of `algo` on Gymnasium's pendulum (off-policy ones learn from step 16)."""
    off_policy = {} if algo == "PPO" else {"learning_starts": 16, "batch_size": 16}
    return ALGOS[algo](
        "MlpPolicy",
        gym.make("Pendulum-v1"),
        policy_kwargs={"net_arch": [16, 16]},
        seed=0,
        device="cpu",
        **SHORT[algo],
        **off_policy,
    )


def _snapshot(params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_critic_warmup_leaves_the_actor_bit_identical_for_its_duration(algo: str) -> None:
    model = _model(algo)
    actor = guards.actor_parameters(model)
    before = _snapshot(actor)
    critic_before = _snapshot([p for p in model.policy.parameters() if all(p is not a for a in actor)])
    warmup = guards.CriticWarmup(model, until_step=128)
    model.learn(128)
    assert all(torch.equal(a, b) for a, b in zip(before, actor, strict=True)), (
        "the actor moved during warm-up"
    )
    critic_now = [p for p in model.policy.parameters() if all(p is not a for a in actor)]
    assert any(not torch.equal(a, b) for a, b in zip(critic_before, critic_now, strict=True))
    warmup.update(128)
    model.learn(128, reset_num_timesteps=False)
    assert any(not torch.equal(a, b) for a, b in zip(before, actor, strict=True)), "released, it learns"


def test_l2sp_adds_the_gradient_of_the_pull_toward_the_pretrained_weights() -> None:
    model = _model("PPO")
    l2sp = guards.L2SP(model, strength=0.5)
    params = [p for p in model.policy.parameters() if p.requires_grad]
    with torch.no_grad():
        for p in params:
            p.add_(0.1)  # moved away from where it was pretrained
    for p in params:
        p.grad = torch.zeros_like(p)
    before = _snapshot(params)
    opt = model.policy.optimizer
    l2sp._hook(opt)
    for p, w in zip(params, before, strict=True):
        anchor = l2sp.anchors[id(p)][1]
        torch.testing.assert_close(p.grad, 2 * 0.5 * (w - anchor))  # d/dw 0.5 ||w - w0||^2
    # a plain optimizer step with only that gradient moves every weight back toward the anchor
    for p in params:
        p.grad = torch.zeros_like(p)
    opt.step()
    distance = sum(((p - l2sp.anchors[id(p)][1]) ** 2).sum() for p in params)
    assert float(distance) < float(
        sum(((w - l2sp.anchors[id(p)][1]) ** 2).sum() for p, w in zip(params, before, strict=True))
    )
    assert float(l2sp.penalty()) > 0


def test_layer_lr_decay_scales_lower_layers_and_survives_sb3s_schedule() -> None:
    model = _model("PPO")
    tr.rebuild_optimizers(model)
    guards.layer_lr_decay(model, 0.5)
    model.learn(64)  # SB3 rewrites every group's rate from its schedule at train()
    base = model.lr_schedule(1.0)
    lrs = {g["lr_scale"]: g["lr"] for g in model.policy.optimizer.param_groups}
    assert lrs[1.0] == pytest.approx(base)  # heads
    assert lrs[0.5] == pytest.approx(0.5 * base) and lrs[0.25] == pytest.approx(0.25 * base)
    top = model.policy.mlp_extractor.policy_net[2].weight  # the top hidden layer of the actor
    group = next(g for g in model.policy.optimizer.param_groups if any(p is top for p in g["params"]))
    assert group["lr_scale"] == 0.5


def test_gradual_unfreezing_thaws_the_top_frozen_layer_first() -> None:
    model = _model("SAC")
    tr.freeze_layers(model, 2)
    tr.rebuild_optimizers(model)
    thaw = guards.GradualUnfreeze(model, frozen_layers=2, steps=[100, 200])
    first, second = model.policy.actor.latent_pi[0], model.policy.actor.latent_pi[2]
    thaw.update(50)
    assert not first.weight.requires_grad and not second.weight.requires_grad
    thaw.update(150)
    assert second.weight.requires_grad and not first.weight.requires_grad  # the top one first
    in_actor_opt = {id(p) for g in model.policy.actor.optimizer.param_groups for p in g["params"]}
    assert id(second.weight) in in_actor_opt and id(first.weight) not in in_actor_opt
    thaw.update(250)
    assert first.weight.requires_grad and thaw.thawed == 2


def test_keep_best_returns_the_best_evaluated_weights_of_a_curve_that_peaks_in_the_middle() -> None:
    model = _model("PPO")
    keep = guards.KeepBest(patience=2)
    weight = model.policy.action_net.weight
    seen = {}
    for step, value in ((0, 10.0), (100, 50.0), (200, 30.0), (300, 20.0)):
        with torch.no_grad():
            weight.fill_(float(step))
        seen[step] = weight.detach().clone()
        keep.observe(step, np.array([value]), model, None)
    assert keep.best_step == 100 and keep.stop  # two evaluations without improvement
    keep.restore(model)
    assert torch.equal(model.policy.action_net.weight, seen[100])


def test_keep_best_gives_a_tie_to_the_later_policy_without_calling_it_an_improvement() -> None:
    model = _model("PPO")
    keep = guards.KeepBest(patience=2)
    for step, value in ((0, 10.0), (100, 1000.0), (200, 1000.0), (300, 1000.0)):
        keep.observe(step, np.array([value]), model, None)
    assert keep.best_step == 300 and keep.best_value == 1000.0  # the longest-trained of the tied best
    assert keep.stop  # two evaluations without a higher return


def test_keep_best_with_a_margin_deploys_only_what_clears_the_start_and_the_best_of_that() -> None:
    model = _model("PPO")
    start = np.array([-7.0, -4.0, -6.0, -3.0, -5.0])  # hard and easy goals: a wide spread
    lucky = start + np.array([2.5, -0.5, 1.5, -1.0, 0.0])  # higher mean (+0.5), episode gains all over
    better = start + np.array([0.3, 0.25, 0.35, 0.3, 0.3])  # +0.3 on every episode
    plain = guards.KeepBest(margin=0.0)
    for step, returns in ((0, start), (100, lucky)):
        plain.observe(step, returns, model, None)
    assert plain.best_step == 100  # any higher mean
    keep = guards.KeepBest(margin=1.0)
    assert keep.observe(0, start, model, None)
    assert not keep.observe(100, lucky, model, None) and keep.best_step == 0  # inside its noise: the start
    assert keep.observe(200, better, model, None) and keep.best_step == 200 and keep.since_best == 0
    assert not keep.observe(300, lucky, model, None) and keep.best_step == 200  # higher, but not clear
    # a gradual gain counts against the start, not the last best: +0.1 over `better`, +0.4 over the start
    assert keep.observe(400, better + 0.1, model, None) and keep.best_step == 400
    # of other episodes, the means are compared with the unpaired standard error
    assert not keep.observe(500, np.array([-3.0, -6.0, -4.0]), model, None)
    assert keep.observe(600, np.array([5.0, 5.1, 4.9]), model, None) and keep.best_step == 600


def test_keep_best_resumes_with_the_starting_policys_episode_returns(tmp_path: Path) -> None:
    model = _model("PPO")
    keep = guards.KeepBest(margin=1.0, path=tmp_path / "best.pt")
    keep.observe(0, np.array([1.0, 2.0, 3.0]), model, None)
    resumed = guards.KeepBest(margin=1.0, path=tmp_path / "best.pt")
    resumed.resume([{"step": 0}, {"step": 100}])
    assert resumed.start_returns is not None and np.array_equal(resumed.start_returns, [1.0, 2.0, 3.0])
    assert resumed.since_best == 1
    assert not resumed.observe(200, np.array([1.2, 2.1, 2.9]), model, None)  # +0.07: within its noise


def test_a_best_pt_without_the_starts_returns_never_makes_a_later_evaluation_the_start(
    tmp_path: Path,
) -> None:
    from simreal.training.engine import artifacts as art

    model = _model("PPO")
    keep = guards.KeepBest(margin=1.0, path=tmp_path / "best.pt")
    keep.observe(0, np.array([1.0, 2.0, 3.0]), model, None)
    old = art.safe_load(tmp_path / "best.pt")
    del old["start_returns"]  # as saved before keep_best_margin existed
    art.atomic_save(old, tmp_path / "best.pt")
    resumed = guards.KeepBest(margin=1.0, path=tmp_path / "best.pt")
    resumed.resume([{"step": 0}, {"step": 100}])
    assert not resumed.observe(200, np.array([0.5, 1.0, 1.5]), model, None)  # lower than the kept best
    assert resumed.start_returns is None  # not taken from that evaluation
    assert resumed.observe(300, np.array([2.0, 2.1, 2.2]), model, None)  # a higher mean replaces it
    assert resumed.best_step == 300


def test_keep_best_and_patience_in_a_run(tmp_path: Path) -> None:
    guard = ["finetune.keep_best=true", "finetune.patience=1", "finetune.timesteps=512", "finetune.l2sp=0.01"]
    guard += ["finetune.critic_warmup_steps=128", "finetune.layer_lr_decay=0.8", "finetune.freeze_layers=0"]
    assert (
        main(["run", *set_args(tmp_path, *guard, "algo.net_arch=[16, 16]", reference=False), "--seeds", "0"])
        == 0
    )
    stage = tmp_path / "quickstart" / "finetune" / "seed0"
    final = json.loads((stage / "final.json").read_text())
    curve = json.loads((stage / "curve.json").read_text())
    assert [p["step"] for p in curve] == list(range(0, 513, 64))  # the whole grid, as scratch's
    kept = final["kept_step"]
    best = max(p["mean_return"] for p in curve if "kept_from" not in p)
    assert next(p["mean_return"] for p in curve if p["step"] == kept) == best
    assert curve[0]["mean_return"] <= best  # never below where fine-tuning started
    if final["stopped_early"]:
        assert all(p["kept_from"] == kept for p in curve if "kept_from" in p)
    report = json.loads((tmp_path / "quickstart" / "report.json").read_text())
    assert report["variants"]["finetune"]["kept_steps"] == [kept]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["finetune.l2sp=-0.1"], "finetune.l2sp: Input should be greater than or equal to 0"),
        (["finetune.layer_lr_decay=0"], "finetune.layer_lr_decay: Input should be greater than 0"),
        (
            ["finetune.freeze_layers=1", "finetune.unfreeze_schedule=[10, 20]"],
            "2 thaws but only 1 frozen layers",
        ),
        (["finetune.patience=3"], "set keep_best: true"),
        (["finetune.keep_best_margin=1"], "keep_best_margin: how keep_best chooses - set keep_best: true"),
        (["finetune.keep_best=true", "finetune.keep_best_margin=-1"], "greater than or equal to 0"),
        (
            ["finetune.keep_best=true", "finetune.keep_best_margin=1", "evaluation.episodes=1"],
            "finetune.keep_best_margin: a margin in standard errors needs >= 2 evaluation.episodes",
        ),
    ],
)
def test_bad_guard_settings_are_one_line_errors(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        load_config(None, overrides)
    assert "\n" not in str(err.value)


def test_frozen_layers_stay_frozen_with_every_guard_on(tmp_path: Path) -> None:
    guard = ["finetune.freeze_layers=1", "finetune.l2sp=0.1", "finetune.layer_lr_decay=0.5"]
    assert (
        main(["run", *set_args(tmp_path, *guard, "algo.net_arch=[16, 16]", reference=False), "--seeds", "0"])
        == 0
    )
    run = tmp_path / "quickstart"
    src = torch.load(run / "pretrain_randomized/seed0/policy.pt", weights_only=True)["states"]["policy"]
    ft = torch.load(run / "finetune/seed0/policy.pt", weights_only=True)["states"]["policy"]
    assert torch.equal(src["mlp_extractor.policy_net.0.weight"], ft["mlp_extractor.policy_net.0.weight"])
    assert not np.allclose(src["action_net.weight"].numpy(), ft["action_net.weight"].numpy())


def test_auto_choice_spends_its_search_inside_the_target_budget(tmp_path: Path) -> None:
    grid = "{learning_rate: [3.0e-5, 3.0e-4], freeze_layers: [0, 1]}"
    auto = f"finetune.auto={{candidates: {grid}, budget_fraction: 0.8}}"
    args = set_args(tmp_path, auto, "finetune.timesteps=1024", "algo.net_arch=[16, 16]", reference=False)
    litter = set(Path(tempfile.gettempdir()).glob("SB3-*"))
    assert main(["run", *args, "--seeds", "0"]) == 0
    assert set(Path(tempfile.gettempdir()).glob("SB3-*")) == litter  # candidates log nowhere but auto.json
    stage = tmp_path / "quickstart" / "finetune" / "seed0"
    search = json.loads((stage / "auto.json").read_text())
    # 4 candidates, 3 planned rounds: 819 // 12 in 64-step rollouts
    assert search["planned_rounds"] == 3 and search["steps_per_round"] == 64
    assert 1 <= search["rounds"] and search["exploration_steps"] <= search["exploration_budget"] == 819
    played = [len(c["scores"]) for c in search["candidates"]]
    assert search["exploration_steps"] == 64 * sum(played) and max(played) == search["rounds"]
    assert all(len(r) == 1 for c in search["candidates"] for r in c["returns"])  # evaluation.episodes
    steps = json.loads((stage / "target_steps.json").read_text())
    assert steps["train"] == 1024  # the search's steps and the winner's rest: the whole budget
    curve = json.loads((stage / "curve.json").read_text())
    scratch = json.loads((tmp_path / "quickstart" / "scratch" / "seed0" / "curve.json").read_text())
    assert [p["step"] for p in curve] == [p["step"] for p in scratch]  # comparable, step for step
    assert all(p["mean_return"] == curve[0]["mean_return"] for p in curve if p.get("exploring"))
    assert search["winner"] in [c["setting"] for c in search["candidates"]]
    decision = search["decision"]
    assert (
        decision["runner_up"] in [c["setting"] for c in search["candidates"]]
        and 0 <= decision["p_better"] <= 1
    )
    report = json.loads((tmp_path / "quickstart" / "report.json").read_text())
    row = report["variants"]["finetune"]["auto"][0]
    assert row["exploration_steps"] == search["exploration_steps"] and row["decision"] == decision
    assert "a race on paired episodes" in (tmp_path / "quickstart" / "report.md").read_text()


def _candidate(setting: str, scores: list[list[float]]) -> auto.Candidate:
    return auto.Candidate({"x": setting}, None, [float(np.mean(r)) for r in scores], scores)  # type: ignore[arg-type]


def test_the_race_drops_only_what_the_leader_beats_clearly_on_paired_episodes() -> None:
    leader = _candidate("leader", [[10.0, 30.0, 12.0, 28.0, 20.0]])
    worse = _candidate("worse", [[8.0, 27.0, 10.0, 26.0, 18.0]])  # lower on every episode: clearly worse
    noisy = _candidate("noisy", [[12.0, 25.0, 14.0, 22.0, 20.0]])  # lower mean, but not episode by episode
    alive = auto._race([leader, worse, noisy], [0, 1, 2], played=1)
    assert alive == [0, 2] and worse.dropped == 1 and noisy.dropped is None
    decision = auto._decision([leader, worse, noisy], 0)
    assert decision["runner_up"] == {"x": "noisy"} and decision["margin"] == pytest.approx(1.4)
    assert decision["separated"] is False and 0.0 < decision["p_better"] < 1.0
    line = _search_line(0, {"winner": {"x": "leader"}, "exploration_steps": 64, "decision": decision}, 256)
    assert (
        "NOT separated: the race kept the runner-up (the race's rule: a paired mean above 2 standard" in line
    )


def test_a_fresh_policy_races_the_transferred_one(tmp_path: Path) -> None:
    grid = "{init: [pretrained, scratch], lr_factor: [0.1, 1.0]}"
    auto_cfg = f"finetune.auto={{candidates: {grid}, budget_fraction: 0.6, episodes: 3}}"
    args = set_args(tmp_path, auto_cfg, "finetune.timesteps=1024", "algo.net_arch=[16, 16]", reference=False)
    assert main(["run", *args, "--seeds", "0"]) == 0
    stage = tmp_path / "quickstart" / "finetune" / "seed0"
    search = json.loads((stage / "auto.json").read_text())
    settings = [c["setting"] for c in search["candidates"]]
    assert settings == [
        {"init": "pretrained", "lr_factor": 0.1},
        {"init": "pretrained", "lr_factor": 1.0},
        {"init": "scratch"},
    ]  # a fresh policy is one candidate whatever the rate
    meta = torch.load(stage / "policy.pt", weights_only=True)
    deployed = json.loads(meta["meta_json"])
    assert (deployed.get("init") == "scratch") == (search["winner"] == {"init": "scratch"})


def test_auto_budget_that_cannot_hold_one_rollout_per_candidate_round_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    auto = "finetune.auto={candidates: {learning_rate: [3.0e-5, 1.0e-4, 3.0e-4]}, budget_fraction: 0.1}"
    assert main(["run", *set_args(tmp_path, auto, reference=False)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "finetune.auto.budget_fraction" in err and "one rollout" in err


@pytest.mark.parametrize("algo", ["SAC", "TD3"])
def test_off_policy_fine_tuning_acts_with_the_policy_from_the_first_target_step(
    algo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = ALGOS[algo](
        "MlpPolicy", gym.make("Pendulum-v1"), learning_starts=100, batch_size=16, seed=0, device="cpu"
    )
    random_actions = []
    real_sample = gym.spaces.Box.sample
    monkeypatch.setattr(
        gym.spaces.Box, "sample", lambda self, *a, **k: random_actions.append(1) or real_sample(self, *a, **k)
    )
    model.learn(8)
    assert len(random_actions) == 8  # SB3's own warm-up: uniform random actions (the test can fail)
    random_actions.clear()
    assert tr.act_from_policy(model, None) == 16  # updates wait for one batch of target data
    model.learn(40, reset_num_timesteps=True)
    assert random_actions == [] and model._n_updates > 0  # the policy acted, and it learned
    assert tr.act_from_policy(_model("PPO"), 5) is None  # on-policy: nothing to change


def test_auto_choice_on_sac_that_could_not_update_in_its_search_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    auto = "finetune.auto={candidates: {freeze_layers: [0, 1]}, budget_fraction: 0.2}"
    sac = [
        "algo.name=SAC",
        "algo.kwargs={batch_size: 32}",
        "algo.net_arch=[16, 16]",
        "finetune.timesteps=512",
    ]
    assert main(["run", *set_args(tmp_path, auto, *sac, "finetune.learning_starts=64", reference=False)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "finetune.learning_starts" in err and "untrained copies" in err
    assert not (tmp_path / "quickstart").exists()  # refused before anything was written


def test_finetune_learning_starts_that_cannot_apply_is_a_one_line_error() -> None:
    with pytest.raises(ConfigError, match="finetune.learning_starts: PPO is on-policy"):
        load_config(overrides=["finetune.learning_starts=64"])  # the quickstart is PPO
    sac = ["algo.name=SAC", "algo.kwargs={batch_size: 64}", "finetune.timesteps=500"]
    with pytest.raises(ConfigError, match=r"finetune.learning_starts: 500 transitions .* \(allowed: below"):
        load_config(overrides=[*sac, "finetune.learning_starts=500"])
    assert load_config(overrides=sac).finetune_learning_starts == 64  # default: one batch


@pytest.mark.parametrize("algo", ["PPO", "SAC"])
def test_the_transfer_summary_counts_what_the_optimizers_train_among_the_total(algo: str) -> None:
    """SAC's entropy coefficient has an optimizer of its own: it is in the total as well as trainable."""
    model = _model(algo)
    tr.rebuild_optimizers(model)
    whole = tr.summarize(model)
    assert whole.trainable_params == whole.total_params
    tr.freeze_layers(model, 1)
    tr.rebuild_optimizers(model)
    part = tr.summarize(model)
    assert part.total_params == whole.total_params and 0 < part.trainable_params < part.total_params
