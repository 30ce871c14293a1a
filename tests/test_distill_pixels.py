"""Distillation into a camera policy: a state teacher labels, the pixel student learns from cached
backbone features and never reads the state, and the student is an ordinary pixel policy downstream
(zero-shot, fine-tuning with a frozen backbone, evaluation, export)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tiny import set_args

from simreal.cli import main
from simreal.config import load_config
from simreal.simulation.observation import ObservationConfig, observation_wrapper
from simreal.simulation.registry import ensure
from simreal.training.engine.artifacts import ArtifactError, load_policy, save_policy
from simreal.training.engine.context import Context
from simreal.training.engine.sb3.loading import load_for_env
from simreal.training.methods.distill.pixels import StudentStats, teacher_rows
from simreal.training.methods.distill.stages import distill_student

PIXEL_DISTILL = [
    "pixels=true",
    "pretrain.nominal_baseline=false",
    "observation.action_history=2",
    "algo.normalize_obs=true",
    "seeds=[0]",
    "workers=1",
    "scratch=false",
    "reference=false",
    "perception={backbone: small_cnn, weights: null, features_dim: 16, readout: diff}",
    "distill={steps: 512, train_every: 128, updates: 8, n_envs: 2, batch_size: 64, "
    "teacher: {timesteps: 128}}",
]
DISTILL_LONG = "distill={steps: 1024, train_every: 128, updates: 16, n_envs: 2, batch_size: 64}"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pixel_distill")
    assert main(["run", *set_args(out, *PIXEL_DISTILL, reference=None)]) == 0
    return out / "quickstart"


def _scalars(folder: Path, tag: str) -> list[float]:
    events = EventAccumulator(str(folder))
    events.Reload()
    return [e.value for e in events.Scalars(tag)]


def test_the_teacher_reads_the_state_and_the_student_only_the_camera(run: Path) -> None:
    teacher = load_policy(run / "pretrain_teacher/seed0/policy.pt").meta
    assert not teacher["pixels"] and teacher["perception"] is None
    assert teacher["observation_space"]["shape"] == [4 + 2]  # the pendulum's state, then 2 actions
    art = load_policy(run / "student/seed0/policy.pt")
    meta = art.meta
    assert meta["pixels"] and meta["perception"]["backbone"] == "small_cnn"
    env_space = meta["env_observation_space"]
    assert env_space["type"] == "Dict" and set(env_space["spaces"]) == {"image", "action_history"}
    width = meta["observation_layout"]["image"][1]
    assert meta["observation_layout"] == {"image": [0, width], "action_history": [width, width + 2]}
    assert art.obs_rms is not None and art.obs_rms.mean.shape == (width + 2,)
    assert np.all(art.obs_rms.var > 0)  # gathered while distilling, not left at its initial value
    summary = json.loads((run / "student/seed0/distill.json").read_text())
    assert summary["steps"] == 512 and len(summary["student_source_returns"]) == 1
    assert len(_scalars(run / "student/seed0", "distill/action_loss")) == 4  # every 128 of 512 steps
    report = json.loads((run / "report.json").read_text())
    assert {"zeroshot_student", "finetune_student"} <= set(report["variants"])


def test_the_students_frozen_backbone_is_the_pretrained_one_throughout(run: Path) -> None:
    """The student's backbone is the experiment's frozen one (the same random init here as the reward-
    trained policy's) and fine-tuning on the target leaves it unchanged."""
    stages = ("pretrain_randomized", "student", "finetune_student")
    backbones = [load_policy(run / s / "seed0/policy.pt").backbone for s in stages]
    assert all(b is not None for b in backbones)
    first = backbones[0]
    assert first is not None
    for other in backbones[1:]:
        assert other is not None and other.keys() == first.keys()
        assert all(torch.equal(first[k], other[k]) for k in first)


def test_the_student_exports_and_evaluates_as_any_pixel_policy(run: Path, tmp_path: Path) -> None:
    policy = run / "finetune_student/seed0/policy.pt"
    onnx = tmp_path / "student.onnx"
    assert main(["export", str(policy), "--format", "onnx", "--out", str(onnx)]) == 0
    assert onnx.is_file()
    out = tmp_path / "eval.json"
    env = "simreal/InvertedPendulum-Pixels-Target-Latency-v0"
    assert main(["evaluate", str(policy), "--env", env, "--episodes", "2", "--json", str(out)]) == 0
    assert len(json.loads(out.read_text())["returns"]) == 2


def _loud_teacher(run: Path, tmp_path: Path) -> Path:
    """The run's (barely trained) teacher with its action layer scaled up: actions that vary with the
    state over the action range, something to learn (the untrained one acts ~0, as does the student)."""
    art = load_policy(run / "pretrain_teacher/seed0/policy.pt")
    state = art.states["policy"]
    state["action_net.weight"] *= 300.0
    task = ensure(load_config(None).task)
    model = load_for_env(
        run / "pretrain_teacher/seed0/policy.pt", lambda: gym.make(task.randomized_id), CPU, 0
    )
    model.model.policy.load_state_dict(state)
    path = tmp_path / "loud_teacher.pt"
    save_policy(model.model, art.obs_rms, art.meta, path)
    return path


def test_distillation_teaches_the_student_the_teachers_actions(run: Path, tmp_path: Path) -> None:
    cfg = load_config(None, [*PIXEL_DISTILL[:-1], DISTILL_LONG, f"output_dir={tmp_path}"])
    ctx = Context(cfg, tmp_path / "x", CPU, progress_bar=False)
    student = distill_student(ctx, _loud_teacher(run, tmp_path), 0, tmp_path / "student")
    losses = _scalars(student.parent, "distill/action_loss")
    assert len(losses) == 8 and losses[0] > 0.05  # a teacher acting over the range
    assert np.mean(losses[-2:]) < 0.5 * losses[0]


def test_the_labelled_env_shows_the_teacher_its_state_view_beside_the_camera() -> None:
    """The env the teacher labels in: the student's camera view plus the state as the teacher's own
    training env shows it (the source's sensor noise on the sim's state) and the same action history -
    the row the teacher reads is [state, actions]."""
    task = ensure(load_config(None).task)
    wrap = observation_wrapper(ObservationConfig(action_history=2))
    assert wrap is not None
    env = wrap(gym.make(task.pixel_randomized_id, teacher_state=True))
    plain = wrap(gym.make(task.pixel_randomized_id))
    try:
        assert set(plain.observation_space.spaces) == {"image", "action_history"}  # type: ignore[attr-defined]
        obs, info = env.reset(seed=3)
        std = info["effects"]["observation_noise.std"]
        errors = []
        for _ in range(20):
            obs, *_ = env.step(np.array([0.7], dtype=np.float32))
            inner: Any = env.unwrapped
            true = np.concatenate([inner.data.qpos, inner.data.qvel])
            errors.append(obs["sim_state"] - true)
        assert 0.0 < std <= 0.02  # the source's sensor noise, drawn for the episode
        assert 0.3 * std < np.std(errors) < 3 * std
        row = teacher_rows([obs])[0]
        np.testing.assert_array_equal(row, np.r_[obs["sim_state"], obs["action_history"]].astype(np.float32))
        np.testing.assert_allclose(obs["action_history"], [0.7, 0.7])
        assert obs["image"].shape == plain.observation_space["image"].shape  # type: ignore[index]
    finally:
        env.close()
        plain.close()


def test_student_statistics_survive_a_checkpoint() -> None:
    stats = StudentStats(3, enabled=True)
    stats.update(np.random.default_rng(0).normal(2.0, 3.0, size=(50, 3)))
    copy = StudentStats(3, enabled=True)
    copy.load(stats.state())
    assert copy.rms is not None and stats.rms is not None
    np.testing.assert_array_equal(copy.rms.mean, stats.rms.mean)
    np.testing.assert_array_equal(copy.rms.var, stats.rms.var)
    assert copy.rms.count == stats.rms.count
    assert StudentStats(3, enabled=False).state() == {}


def test_a_teacher_with_another_action_history_is_refused_in_one_line(run: Path, tmp_path: Path) -> None:
    overrides = [o for o in PIXEL_DISTILL if not o.startswith("observation.")]
    cfg = load_config(None, [*overrides, "observation.action_history=1", f"output_dir={tmp_path}"])
    ctx = Context(cfg, tmp_path / "x", CPU, progress_bar=False)
    with pytest.raises(ArtifactError) as err:
        distill_student(ctx, run / "pretrain_teacher/seed0/policy.pt", 0, tmp_path / "student")
    message = str(err.value)
    assert "\n" not in message and "action_history 2" in message and "allowed: the same" in message


def test_frame_rows_keep_uint8_frames_and_entries_and_split_held_out_episodes() -> None:
    from simreal.training.methods.distill.dagger import Holdout
    from simreal.training.methods.distill.pixels import FrameRows, StudentStats, label_buffer

    space = gym.spaces.Dict(
        {
            "image": gym.spaces.Box(0, 255, (4, 4, 6), np.uint8),
            "action_history": gym.spaces.Box(-1, 1, (2,), np.float32),
        }
    )
    train = label_buffer(10, space, 0, 3, StudentStats(0, False), cached=False)
    held = FrameRows(10, space, 3)
    assert isinstance(train, FrameRows)
    holdout = Holdout(0.0, 2, held, np.random.default_rng(0))
    holdout.held[:] = [False, True]  # env 1's episode is held out
    for t in range(3):
        rows = {
            "image": np.full((2, 4, 4, 6), [[10 * t]], np.uint8).reshape(2, 4, 4, 6)
            + np.arange(2, dtype=np.uint8)[:, None, None, None],
            "action_history": np.array([[t, 0.5], [t, -0.5]], np.float32),
        }
        holdout.add(train, rows, np.array([[t, 0, 0], [t, 1, 1]], np.float32))
    assert train.n == 3 and held.n == 3
    s, teacher = train.sample(np.random.default_rng(1), 64)
    assert isinstance(s, dict) and s["image"].dtype == np.uint8 and s["image"].shape[1:] == (4, 4, 6)
    assert (s["image"] % 10 == 0).all() and (teacher[:, 1] == 0).all()  # env 0's rows only
    np.testing.assert_array_equal(s["action_history"][:, 0], teacher[:, 0])  # rows stay paired
    h, held_teacher = held.sample(np.random.default_rng(1), 64)
    assert isinstance(h, dict) and (h["image"] % 10 == 1).all() and (held_teacher[:, 1] == 1).all()


def test_an_end_to_end_camera_student_trains_its_cnn_on_frames(run: Path, tmp_path: Path) -> None:
    """`cache_features: false`: the small CNN learns (with DrQ shifts) from the frames of the label
    buffer; its weights leave their init, the action loss falls, and the artifact is an uncached policy."""
    from simreal.training.engine.sb3.loading import build_model
    from simreal.training.engine.stage import policy_env
    from simreal.training.methods.distill.stages import context_for, student_config

    cfg = load_config(
        None,
        [
            *PIXEL_DISTILL[:-2],
            "algo.normalize_obs=false",
            "perception={backbone: small_cnn, weights: null, features_dim: 16, cache_features: false, "
            "unfreeze_last: 3, augmentation: {shift_pad: 2}}",
            DISTILL_LONG,
            f"output_dir={tmp_path}",
        ],
    )
    ctx = Context(cfg, tmp_path / "x", CPU, progress_bar=False)
    sctx = context_for(ctx, student_config(cfg))

    def fresh() -> dict[str, torch.Tensor]:
        venv, encoder = policy_env(sctx, ctx.task.pixel_randomized_id, 0, n_envs=1)
        model = build_model(sctx.cfg.algo, venv, 1e-3, CPU, 0, encoder)
        venv.close()
        return {k: v.clone() for k, v in model.policy.state_dict().items() if "features_extractor" in k}

    init = fresh()
    assert init and all(torch.equal(v, fresh()[k]) for k, v in init.items())  # the init is reproducible
    student = distill_student(ctx, _loud_teacher(run, tmp_path), 0, tmp_path / "student")
    art = load_policy(student)
    assert art.backbone is None and art.obs_rms is None and art.meta["perception"]["cache_features"] is False
    trained = {k: v for k, v in art.states["policy"].items() if k in init}
    assert trained.keys() == init.keys()
    assert any(not torch.equal(v, init[k]) for k, v in trained.items() if ".backbone." in k)
    losses = _scalars(student.parent, "distill/action_loss")
    assert len(losses) == 8 and losses[0] > 0.05 and np.mean(losses[-2:]) < 0.7 * losses[0]
    summary = json.loads((student.parent / "distill.json").read_text())
    assert np.isfinite(summary["final_losses"]["holdout_action_loss"])


def test_an_interrupted_distillation_resumes_its_student_optimizer_and_statistics(
    run: Path, tmp_path: Path
) -> None:
    from simreal.training.methods.distill.dagger import resume, save_checkpoint

    policy = run / "student/seed0/policy.pt"
    env_id = "simreal/InvertedPendulum-Pixels-Rand-v0"
    saved = load_for_env(policy, lambda: gym.make(env_id), CPU, 0).model
    optimizer = torch.optim.Adam(saved.policy.parameters(), lr=1e-3)
    stats = StudentStats(int(saved.observation_space.shape[0]), enabled=True)  # type: ignore[index]
    stats.update(np.random.default_rng(1).normal(size=(8, stats.rms.mean.shape[0])))  # type: ignore[union-attr]
    save_checkpoint(tmp_path / "ckpt.pt", saved, optimizer, 4096, obs_rms=stats.state())
    fresh = load_for_env(policy, lambda: gym.make(env_id), CPU, 1).model
    with torch.no_grad():
        for p in fresh.policy.parameters():
            p.add_(1.0)
    again = StudentStats(stats.rms.mean.shape[0], enabled=True)  # type: ignore[union-attr]
    step = resume(
        tmp_path / "ckpt.pt",
        fresh,
        torch.optim.Adam(fresh.policy.parameters(), lr=1e-3),
        lambda data: again.load(data["obs_rms"]),
    )
    assert step == 4096
    mine, theirs = fresh.policy.state_dict(), saved.policy.state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    np.testing.assert_array_equal(again.rms.mean, stats.rms.mean)  # type: ignore[union-attr]
    assert resume(tmp_path / "none.pt", fresh, torch.optim.Adam(fresh.policy.parameters())) == 0
