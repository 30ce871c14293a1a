"""Teacher-student distillation: what the teacher sees, what the student never sees, that distillation
learns, and that the student is an ordinary policy downstream (artifact, ONNX export, the pipeline).

The tiny task is the user's point mass (`user_envs`): its mass and motor gain are attributes of the env,
so the privileged values can be checked against the env itself, not against simreal's own bookkeeping.
"""

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
from user_envs import POINT_SOURCE

from simreal.cli import main
from simreal.config import load_config
from simreal.sections.distill import DistillConfig, MixingConfig
from simreal.simulation.observation import ObservationConfig, observation_wrapper
from simreal.simulation.privileged import History, Privileged, Window
from simreal.training.engine.artifacts import ArtifactError, load_policy, save_policy
from simreal.training.engine.context import Context
from simreal.training.engine.evaluation import normalize
from simreal.training.engine.sb3.loading import load_for_env
from simreal.training.methods.distill.dagger import Holdout, LabelBuffer, student_rms, train_rows
from simreal.training.methods.distill.stages import distill_student, pretrain_teacher

CPU = torch.device("cpu")
TASK: dict[str, Any] = {
    **POINT_SOURCE,
    "name": "DistillPoint",
    "randomization": {**POINT_SOURCE["randomization"], "resample_every_steps": 15},
    "targets": {"heavy": {"physics": [{"param": "user_envs:MASS", "value": 1.8}]}},
}
DISTILL = {
    "steps": 640,
    "train_every": 160,
    "updates": 8,
    "n_envs": 4,
    "batch_size": 64,
    "student": {"history": 4},
}


def _config(tmp_path: Path, task: dict[str, Any] = TASK, **extra: Any) -> Path:
    data = {
        "experiment": "distill",
        "task": task,
        "target": "heavy",
        "seeds": [0],
        "output_dir": str(tmp_path / "runs"),
        "algo": {"name": "PPO", "net_arch": [16], "kwargs": {"n_steps": 64, "batch_size": 32, "n_epochs": 1}},
        "pretrain": {"timesteps": 128, "nominal_baseline": False},
        "finetune": {"timesteps": 128},
        "evaluation": {"every_steps": 64, "episodes": 1, "final_episodes": 2},
        "reference": False,
        "scratch": False,
        "distill": DISTILL,
        **extra,
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _ctx(tmp_path: Path, *overrides: str, **extra: Any) -> Context:
    cfg = load_config(_config(tmp_path, **extra), list(overrides))
    return Context(cfg, Path(cfg.output_dir) / cfg.experiment, CPU, progress_bar=False)


def _scalars(folder: Path, tag: str) -> list[float]:
    events = EventAccumulator(str(folder))
    events.Reload()
    return [e.value for e in events.Scalars(tag)]


def test_teacher_sees_exactly_the_normalized_values_of_the_step(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    env = Privileged(gym.make(ctx.task.randomized_id))
    assert env.labels == ["MASS/body", "GAIN/motor", "motor_slip.prob"]
    point = env.unwrapped
    seen_masses = []
    for episode in range(3):
        obs, _ = env.reset(seed=episode)
        slip = next(w for w in _chain(env) if type(w).__name__ == "MotorSlip")
        for _ in range(40):
            priv = obs[2:]
            # the env's own attributes, relative to the nominal 1.0 (mass, gain); the slip by its top 0.2
            want = [point.mass / 1.0 - 1.0, point.gain / 1.0 - 1.0, slip.now["prob"] / 0.2]
            np.testing.assert_allclose(priv, want, rtol=1e-6, atol=1e-7)
            seen_masses.append(point.mass)
            obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                break
    # resampled every 15 steps and every episode: the values are this step's, not nominal, not stale
    assert len(set(np.round(seen_masses, 9))) >= 6
    assert not np.allclose(seen_masses, 1.0)


def _chain(env: gym.Env[Any, Any]) -> list[gym.Env[Any, Any]]:
    out = []
    while isinstance(env, gym.Wrapper):
        out.append(env)
        env = env.env
    return out


def test_a_task_with_nothing_privileged_is_one_line_before_training(tmp_path: Path, capsys: Any) -> None:
    plain = {k: v for k, v in TASK.items() if k not in ("randomization", "source_effects")}
    plain["name"] = "PlainPoint"
    config = _config(tmp_path, task=plain)
    assert main(["run", str(config), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nothing privileged" in err and "randomization.params" in err
    assert not (tmp_path / "runs").exists()


def test_history_below_one_is_one_line(tmp_path: Path, capsys: Any) -> None:
    assert main(["run", str(_config(tmp_path)), "--set", "distill.student.history=0"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        len(err.splitlines()) == 1
        and "distill.student.history" in err
        and "greater than or equal to 1" in err
    )


def test_window_holds_the_last_pairs_oldest_first() -> None:
    obs_space = gym.spaces.Box(-5, 5, shape=(2,), dtype=np.float32)
    act_space = gym.spaces.Box(-1, 1, shape=(1,), dtype=np.float32)
    window = Window(obs_space, act_space, 3)
    first = window.reset(np.array([1.0, 2.0]))
    np.testing.assert_array_equal(first, [1, 2, 1, 2, 0, 1, 2, 0, 1, 2, 0])  # reset obs, neutral action
    window.push(np.array([0.5]), np.array([3.0, 4.0]))
    out = window.push(np.array([-0.5]), np.array([5.0, 6.0]))
    np.testing.assert_array_equal(out, [5, 6, 1, 2, 0, 1, 2, 0.5, 3, 4, -0.5])
    assert window.space.shape == out.shape


def test_mixing_schedule_falls_from_start_to_end() -> None:
    mix = MixingConfig(start=1.0, end=0.2, fraction=0.5)
    assert mix.beta(0, 100) == 1.0
    assert mix.beta(25, 100) == pytest.approx(0.6)
    assert mix.beta(50, 100) == pytest.approx(0.2) and mix.beta(99, 100) == pytest.approx(0.2)


def test_student_statistics_come_from_the_teachers() -> None:
    from stable_baselines3.common.running_mean_std import RunningMeanStd

    teacher = RunningMeanStd(shape=(5,))  # 2 observation values, 3 privileged
    teacher.mean, teacher.var = np.array([1.0, 2.0, 9, 9, 9]), np.array([4.0, 0.25, 9, 9, 9])
    act = gym.spaces.Box(-2, 2, shape=(1,), dtype=np.float32)
    window = Window(gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32), act, 2)
    rms = student_rms(teacher, window, act)
    assert rms is not None
    np.testing.assert_allclose(rms.mean, [1, 2, 1, 2, 0, 1, 2, 0])
    np.testing.assert_allclose(rms.var, [4, 0.25, 4, 0.25, 16 / 12, 4, 0.25, 16 / 12])


@pytest.fixture(scope="module")
def distilled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny teacher, and a student distilled from it with another head (nothing copied but log_std)."""
    tmp = tmp_path_factory.mktemp("distilled")
    ctx = _ctx(tmp, "distill.student.net_arch=[8]", "distill.steps=1280")
    teacher = pretrain_teacher(ctx, 0)
    student = distill_student(ctx, teacher, 0)
    return {"ctx": ctx, "teacher": teacher, "student": student}


def test_distillation_loss_falls_and_the_student_never_sees_privileged_values(
    distilled: dict[str, Any],
) -> None:
    stage = distilled["student"].parent
    losses = _scalars(stage, "distill/action_loss")
    assert len(losses) >= 4 and np.mean(losses[-2:]) < 0.5 * losses[0]
    assert _scalars(stage, "distill/latent_loss")[-1] < _scalars(stage, "distill/latent_loss")[0]
    meta = load_policy(distilled["student"]).meta
    obs_dim, act_dim, k = 2, 1, 4
    assert meta["observation_space"]["shape"] == [obs_dim + k * (obs_dim + act_dim)]  # no priv entries
    assert meta["observation"]["history_window"] == k and not meta["observation"]["privileged"]
    wrap = observation_wrapper(ObservationConfig.model_validate(meta["observation"]))
    assert wrap is not None
    env = wrap(gym.make(distilled["ctx"].task.randomized_id))
    assert isinstance(env, History) and not any(isinstance(w, Privileged) for w in _chain(env))
    summary = json.loads((stage / "distill.json").read_text())
    assert summary["steps"] == 1280 and summary["started_from_teacher"] == "log_std"
    assert summary["student_params"] != summary["teacher_params"]


def _blind_teacher(tmp_path: Path, ctx: Context, teacher: Path) -> Path:
    """The teacher with its weights from z into the policy zeroed: its actions ignore the privileged
    values (inputs of the first layer: [obs (2), z (8)])."""
    art = load_policy(teacher)
    state = art.states["policy"]
    state["mlp_extractor.policy_net.0.weight"][:, 2:] = 0.0
    model = load_for_env(teacher, lambda: gym.make(ctx.task.randomized_id), CPU, 0).model
    model.policy.load_state_dict(state)
    path = tmp_path / "blind_teacher.pt"
    save_policy(model, art.obs_rms, art.meta, path)
    return path


def test_with_a_teacher_that_ignores_z_a_student_with_its_own_head_learns_to_match_it(
    tmp_path: Path, distilled: dict[str, Any]
) -> None:
    """Nothing is copied (another head shape): what the student does, it learned by distillation. Where
    the teacher ignores z, the observation alone determines the action, so the student can match it."""
    ctx = _ctx(tmp_path, "distill.steps=4000", "distill.updates=16", "distill.student.net_arch=[32]")
    blind = _blind_teacher(tmp_path, ctx, distilled["teacher"])
    t = load_for_env(blind, lambda: gym.make(ctx.task.randomized_id), CPU, 0)
    untrained = _ctx(tmp_path, "distill.steps=4", "distill.student.net_arch=[32]")  # no update happens
    fresh = distill_student(untrained, blind, 0, tmp_path / "untrained")
    student = distill_student(ctx, blind, 0, tmp_path / "student")
    assert json.loads((student.parent / "distill.json").read_text())["started_from_teacher"] == "log_std"

    def disagreement(path: Path) -> float:
        s = load_for_env(path, lambda: gym.make(ctx.task.randomized_id), CPU, 0)
        tenv, senv = t.make_env(), s.make_env()
        errors, spread = [], []
        for episode in range(4):
            tobs, _ = tenv.reset(seed=500 + episode)
            sobs, _ = senv.reset(seed=500 + episode)
            for _ in range(40):
                ta, _ = t.model.predict(normalize(tobs, t.obs_rms), deterministic=True)
                sa, _ = s.model.predict(normalize(sobs, s.obs_rms), deterministic=True)
                errors.append(float(np.sum((sa - ta) ** 2)))
                spread.append(ta)
                tobs, *_ = tenv.step(ta)  # the teacher drives both: the same states
                sobs, *_ = senv.step(ta)
        return float(np.mean(errors) / (np.var(spread) + 1e-8))

    before, after = disagreement(fresh), disagreement(student)
    assert after < 0.1 and after < 0.2 * before  # matched, and by learning


@pytest.mark.parametrize("encoder", ["conv", "gru"])
def test_student_round_trips_and_its_onnx_takes_the_history(tmp_path: Path, encoder: str) -> None:
    ort = pytest.importorskip("onnxruntime")
    ctx = _ctx(tmp_path, f"distill.student.encoder={encoder}", "distill.steps=160", "algo.normalize_obs=true")
    student = distill_student(ctx, pretrain_teacher(ctx, 0), 0)
    loaded = load_for_env(student, lambda: gym.make(ctx.target_id), CPU, 0)
    again = load_for_env(student, lambda: gym.make(ctx.target_id), CPU, 0)
    assert main(["export", str(student), "--format", "onnx"]) == 0
    info = json.loads((student.parent / "policy.onnx.json").read_text())
    fill = info["input"]["history"]["fill"]
    assert info["input"]["history"]["shape"] == ["batch", 4, 3] and fill["history_steps"] == 4
    assert info["verification"]["max_abs_error"] <= 1e-5
    session = ort.InferenceSession(str(student.parent / "policy.onnx"), providers=["CPUExecutionProvider"])
    env = loaded.make_env()
    obs, _ = env.reset(seed=1)
    for _ in range(20):  # the deployer's view: raw observation and raw window, normalization in the graph
        want, _ = loaded.model.predict(normalize(obs, loaded.obs_rms), deterministic=True)
        twin, _ = again.model.predict(normalize(obs, again.obs_rms), deterministic=True)
        got = session.run(None, {"obs": obs[None, :2], "history": obs[None, 2:].reshape(1, 4, 3)})[0]
        np.testing.assert_allclose(got[0], want, atol=1e-5)
        np.testing.assert_array_equal(twin, want)
        obs, *_ = env.step(want)


def test_a_teacher_of_another_task_is_refused_in_one_line(
    tmp_path: Path, distilled: dict[str, Any], capsys: Any
) -> None:
    quick = Path(__file__).parents[1] / "configs" / "quickstart.yaml"
    args = ["distill", str(distilled["teacher"]), "--config", str(quick), "--set", "distill.steps=100"]
    assert main([*args, "--set", f"output_dir={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not match task InvertedPendulum" in err
    assert not (tmp_path / "out").exists()


def test_pipeline_reports_the_student_beside_the_other_variants(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert main(["run", str(config), *set_args(tmp_path / "runs", reference=False)]) == 0
    run = tmp_path / "runs" / "distill"
    report = json.loads((run / "report.json").read_text())
    assert {"zeroshot_student", "finetune_student", "finetune", "zeroshot_randomized"} <= set(
        report["variants"]
    )
    grid = [p["step"] for p in json.loads((run / "finetune" / "seed0" / "curve.json").read_text())]
    for variant in ("zeroshot_student", "finetune_student"):
        curve = json.loads((run / variant / "seed0" / "curve.json").read_text())
        assert [p["step"] for p in curve] == grid  # the same evaluation grid
    assert report["distillation"]["steps"] == DISTILL["steps"]
    assert "p_student_beats_randomized_zeroshot" in report["comparisons"]
    assert "## Distillation" in (run / "report.md").read_text()
    assert (run / "summary" / "finetune_student").is_dir()  # in the TensorBoard chart
    pytest.importorskip("onnxruntime")
    tuned = run / "finetune_student" / "seed0" / "policy.pt"
    assert main(["export", str(tuned), "--format", "onnx"]) == 0  # a fine-tuned student keeps its layout
    info = json.loads((tuned.parent / "policy.onnx.json").read_text())
    assert info["input"]["history"]["shape"] == ["batch", 4, 3] and info["input"]["shape"] == ["batch", 2]


def test_an_interrupted_distillation_continues_from_its_checkpoint(tmp_path: Path, monkeypatch: Any) -> None:
    import simreal.training.methods.distill.dagger as dagger

    ctx = _ctx(tmp_path, "checkpoint_every_steps=160", "distill.steps=640")
    teacher = pretrain_teacher(ctx, 0)
    real, calls = dagger.train, {"n": 0}

    def crash_on_third(*args: Any, **kwargs: Any) -> dict[str, float]:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # a kill mid-run
        return real(*args, **kwargs)

    monkeypatch.setattr(dagger, "train", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        distill_student(ctx, teacher, 0)
    stage = ctx.stage_dir("student", 0)
    assert (stage / dagger.CHECKPOINT).is_file() and not (stage / "policy.pt").exists()
    saved = dagger.safe_load(stage / dagger.CHECKPOINT)["step"]
    assert saved == 320
    monkeypatch.setattr(dagger, "train", real)
    distill_student(ctx, teacher, 0)
    assert (stage / "policy.pt").is_file() and not (stage / dagger.CHECKPOINT).exists()
    steps = [e.step for e in _events(stage, "distill/action_loss")]
    assert steps == [160, 320, 480, 640]  # resumed at the checkpoint's step: nothing lost, nothing twice


def _events(folder: Path, tag: str) -> list[Any]:
    events = EventAccumulator(str(folder))
    events.Reload()
    return list(events.Scalars(tag))


def test_an_oracle_view_reads_a_sim_targets_true_values(tmp_path: Path) -> None:
    """The source's layout over the target: the target's mass (1.8 x nominal) where the source's is."""
    from simreal.simulation.privileged import PrivilegedView

    ctx = _ctx(tmp_path)
    view = PrivilegedView(gym.make(ctx.task.randomized_id))
    oracle = Privileged(gym.make(ctx.target_id), view)
    obs, _ = oracle.reset(seed=0)
    assert oracle.unwrapped.mass == pytest.approx(1.8)
    np.testing.assert_allclose(obs[2:], [0.8, 0.0, 0.0], atol=1e-6)  # mass +80%, gain nominal, no slip


def test_the_distillation_window_sees_what_the_history_wrapper_shows_at_evaluation(tmp_path: Path) -> None:
    """The loop keeps a Window over the teacher's env; evaluation and fine-tuning wrap the env in History.
    Same seed, same actions (clipped as SB3 sends them), across an episode's end: identical observations."""
    ctx = _ctx(tmp_path)
    teacher_env = Privileged(gym.make(ctx.task.randomized_id))
    history_env = History(gym.make(ctx.task.randomized_id), 4)
    window = Window(gym.spaces.Box(-np.inf, np.inf, (2,), np.float32), history_env.action_space, 4)
    rng = np.random.default_rng(0)
    tobs, _ = teacher_env.reset(seed=7)
    hobs, _ = history_env.reset(seed=7)
    wobs = window.reset(tobs[:2])
    resets = 0
    for _ in range(100):  # 40-step episodes: two resets on the way
        np.testing.assert_array_equal(wobs, hobs)
        action = np.clip(rng.normal(0, 2, size=1), -1, 1).astype(np.float32)
        tobs, _, term, trunc, _ = teacher_env.step(action)
        hobs, _, hterm, htrunc, _ = history_env.step(action)
        assert (term or trunc) == (hterm or htrunc)
        if term or trunc:
            resets += 1
            tobs, _ = teacher_env.reset()
            hobs, _ = history_env.reset()
            wobs = window.reset(tobs[:2])
        else:
            wobs = window.push(action, tobs[:2])
    assert resets == 2


def test_a_sac_student_gets_the_teachers_entropy_and_critics_it_can_use(tmp_path: Path) -> None:
    ctx = _ctx(
        tmp_path,
        "algo.name=SAC",
        "algo.kwargs={learning_starts: 64, buffer_size: 2000, batch_size: 32}",
        "distill.steps=320",
    )
    teacher = pretrain_teacher(ctx, 0)
    student = distill_student(ctx, teacher, 0)
    t, s = load_policy(teacher), load_policy(student)
    assert torch.equal(s.tensors["log_ent_coef"], t.tensors["log_ent_coef"])  # not reset to 1.0
    policy = s.states["policy"]
    for key, value in policy.items():  # the target critic starts as the critic, encoder included
        if key.startswith("critic_target."):
            torch.testing.assert_close(value, policy["critic." + key.removeprefix("critic_target.")])
    losses = _scalars(student.parent, "distill/critic_latent_loss")
    assert losses and all(np.isfinite(losses))  # the critic's own history encoder learned its z
    q_losses = _scalars(student.parent, "distill/critic_loss")  # its critics learned the teacher's Q
    assert len(q_losses) >= 2 and all(np.isfinite(q_losses)) and q_losses[-1] < q_losses[0]
    summary = json.loads((student.parent / "distill.json").read_text())
    assert summary["started_from_teacher"] == "head"


def test_a_student_stage_from_another_teacher_is_refused(tmp_path: Path, distilled: dict[str, Any]) -> None:
    ctx = _ctx(tmp_path, "distill.steps=160")
    out = tmp_path / "student"
    distill_student(ctx, distilled["teacher"], 0, out)
    other = _blind_teacher(tmp_path, ctx, distilled["teacher"])
    with pytest.raises(ArtifactError, match="a student distilled from .* with other teacher"):
        distill_student(ctx, other, 0, out)
    changed = _ctx(tmp_path, "distill.steps=320")
    with pytest.raises(ArtifactError, match="with other distill settings"):
        distill_student(changed, distilled["teacher"], 0, out)


def test_held_out_episodes_are_scored_and_never_trained_on(tmp_path: Path, distilled: dict[str, Any]) -> None:
    """Rows of a held-out episode go to the holdout buffer only (each env's episode drawn anew at its
    reset); the stage logs the student's action loss on them beside its training loss."""
    rng = np.random.default_rng(0)
    train, held = LabelBuffer(10_000, 1, 1), LabelBuffer(10_000, 1, 1)
    holdout = Holdout(0.3, 4, held, rng)
    episode = np.arange(4)  # each env's episode number, written into its rows
    held_episodes, next_episode = set(), 4
    for step in range(2_000):
        for i in range(4):
            if holdout.held[i]:
                held_episodes.add(int(episode[i]))
        rows = episode[:, None].astype(np.float32)
        holdout.add(train, rows, rows)
        if step % 10 == 9:  # every env's episode ends
            for i in range(4):
                holdout.new_episode(i)
                episode[i], next_episode = next_episode, next_episode + 1
    trained = set(train.student[: train.n, 0].astype(int).tolist())
    scored = set(held.student[: held.n, 0].astype(int).tolist())
    assert scored == held_episodes and not trained & scored
    assert trained | scored == set(range(next_episode - 4))  # the last 4 began after the last step
    assert 0.25 < len(scored) / (next_episode - 4) < 0.35
    untouched = np.random.default_rng(1)
    none = Holdout(0.0, 4, held, untouched)  # holdout 0: no episode held, the loop's stream as without it
    none.new_episode(0)
    assert not none.held.any() and untouched.random() == np.random.default_rng(1).random()

    ctx = _ctx(tmp_path, "distill.steps=640", "distill.holdout=0.5")
    student = distill_student(ctx, distilled["teacher"], 0)
    scores = _scalars(student.parent, "distill/holdout_action_loss")
    assert scores and all(np.isfinite(scores))
    summary = json.loads((student.parent / "distill.json").read_text())
    assert summary["final_losses"]["holdout_action_loss"] == pytest.approx(scores[-1], rel=1e-5)


@pytest.mark.parametrize(("steps", "n_envs", "buffer"), [(600, 4, 100_000), (601, 4, 100_000), (600, 4, 256)])
def test_the_training_buffer_holds_every_row_a_run_adds(steps: int, n_envs: int, buffer: int) -> None:
    """Room for as many rows as a distillation adds (whole steps of every env, the last one past `steps`),
    capped at `buffer`: a run with fewer steps than `buffer` never overwrites a row and reserves no room it
    never fills; a smaller `buffer` keeps the most recent rows."""
    d = DistillConfig(steps=steps, n_envs=n_envs, buffer=buffer)
    rows = train_rows(d)
    assert rows <= min(buffer, steps + n_envs)
    labels = LabelBuffer(rows, 1, 1)
    step, added = 0, 0
    while step < steps:  # as the DAgger loop counts
        labels.add(np.full((n_envs, 1), added // n_envs, dtype=np.float32), np.zeros((n_envs, 1), np.float32))
        step, added = step + n_envs, added + n_envs
    kept = labels.student[: labels.n, 0]
    assert labels.n == min(added, buffer)  # every row the run added, unless `buffer` is smaller
    assert kept.min() == (added - labels.n) // n_envs  # the oldest rows went first, if any did
