"""Why a distilled camera student falls: what its frozen features tell about the state on episodes it
never saw, and how well heads fitted to them generalize.

Usage: python benchmarks/diagnose_pixel_student.py RUN_DIR [--seed 1] [--steps 30000]

RUN_DIR is a finished `simreal run configs/inverted_pendulum_pixels_distill.yaml` (its teacher and
student of `--seed`). The script:

1. collects `--steps` rows in the randomized pixel source, 8 envs, the student and the teacher each
   acting with probability 0.5 (the states DAgger sees): the student's cached-feature rows, the
   teacher's [state, action history] rows and each row's episode;
2. holds out a fifth of the episodes (never fitted) and reports, on them, the R^2 of a ridge probe from
   the features to each state value (cart position, pole angle, their velocities);
3. fits heads to the teacher's actions on the other episodes (940 minibatch steps of 256, the budget of
   the shipped config's DAgger) and prints training and held-out MSE: the student's own head (the
   projection and MLP of the run's config), with weight decay, with dropout on its input, and the
   product's spatial-softmax keypoint read-out (`agents.keypoints`) on each frame's grid of the student's
   perception (its frames recovered from the cached read-out).

Results and their reading: BENCHMARKS.md, "Why the camera students fall".
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from stable_baselines3.common.running_mean_std import RunningMeanStd  # noqa: E402
from torch import nn  # noqa: E402

from agents.extractors import BackboneExtractor  # noqa: E402
from agents.keypoints import SpatialKeypoints  # noqa: E402
from simreal.config import load_config  # noqa: E402
from simreal.training.engine.context import Context  # noqa: E402
from simreal.training.engine.evaluation import normalize  # noqa: E402
from simreal.training.engine.sb3.loading import LoadedPolicy, build_model, load_for_env  # noqa: E402
from simreal.training.engine.stage import policy_env  # noqa: E402
from simreal.training.methods.distill.dagger import outputs  # noqa: E402
from simreal.training.methods.distill.pixels import student_rows, teacher_rows  # noqa: E402
from simreal.training.methods.distill.stages import context_for, student_config  # noqa: E402

CPU = torch.device("cpu")
UPDATES, BATCH = 940, 256


def collect(ctx: Context, student: LoadedPolicy, teacher: LoadedPolicy, steps: int, seed: int) -> Any:
    pid = ctx.task.pixel_randomized_id
    envs = [ctx.make_env(pid, teacher_state=True) for _ in range(8)]
    encode = student.encoder.batch()
    rng = np.random.default_rng(seed)
    obs = [env.reset(seed=777_000 + seed * 1000 + i)[0] for i, env in enumerate(envs)]
    episode, next_episode = list(range(8)), 8
    previous: list[int | None] = [None] * 8
    rows, labels, episodes = [], [], []
    for _ in range(steps // 8):
        raw = student_rows(encode(obs, previous))  # the student's own view (the teacher's state left out)
        t = teacher_rows(obs)
        rows.append(raw)
        labels.append(t)
        episodes.append(list(episode))
        a_s, _ = student.model.predict(normalize(raw, student.obs_rms), deterministic=True)
        a_t, _ = teacher.model.predict(normalize(t, teacher.obs_rms), deterministic=True)
        use_teacher = rng.random(8) < 0.5
        previous = list(range(8))
        for i, env in enumerate(envs):
            obs[i], _, terminated, truncated, _ = env.step(a_t[i] if use_teacher[i] else a_s[i])
            if terminated or truncated:
                obs[i], _ = env.reset()
                previous[i], episode[i], next_episode = None, next_episode, next_episode + 1
    for env in envs:
        env.close()
    return np.concatenate(rows), np.concatenate(labels), np.concatenate(episodes)


def ridge_r2(x: np.ndarray, y: np.ndarray, held: np.ndarray, lam: float = 1000.0) -> np.ndarray:
    mu, sd = x[~held].mean(0), x[~held].std(0) + 1e-6
    z = np.c_[(x - mu) / sd, np.ones(len(x))]
    w = np.linalg.solve(z[~held].T @ z[~held] + lam * np.eye(z.shape[1]), z[~held].T @ y[~held])
    err = ((z[held] @ w - y[held]) ** 2).mean(0)
    return np.asarray(1 - err / y[held].var(0))


class KeypointHead(nn.Module):
    """The product's keypoint read-out (`agents.keypoints.SpatialKeypoints`, 16 per frame) on each frame's
    grid, then an MLP 64-64 on [keypoints and their motion, the action history]."""

    def __init__(self, channels: int, grid: int, n_frames: int, history: int) -> None:
        super().__init__()
        self.points = SpatialKeypoints(channels, grid, n_frames, keypoints=16)
        self.mlp = nn.Sequential(
            nn.Linear(self.points.out_features + history, 64),
            nn.Tanh(),
            nn.Linear(64, 64),
            nn.Tanh(),
            nn.Linear(64, 1),
        )
        self.image = n_frames * channels * grid * grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([self.points(x[:, : self.image]), x[:, self.image :]], -1))


def frames_oldest_first(rows: np.ndarray, extractor: BackboneExtractor) -> np.ndarray:
    """Cached rows (image features in the extractor's read-out, then the other entries) -> the same rows
    with each frame's own features, oldest first (undoing ``readout: diff``)."""
    k = extractor.n_frames
    image = extractor.pooled_features()
    if extractor.readout == "stack" or k == 1:
        return rows
    parts = rows[:, :image].reshape(len(rows), k, -1)  # newest, then newest-first differences
    newest_first = parts[:, :1] - np.concatenate([np.zeros_like(parts[:, :1]), np.cumsum(parts[:, 1:], 1)], 1)
    return np.concatenate([newest_first[:, ::-1].reshape(len(rows), -1), rows[:, image:]], 1)


def fit(
    act: Any,
    params: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    held: np.ndarray,
    wd: float = 0.0,
    drop: float = 0.0,
) -> tuple[float, float]:
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=wd)
    rng = np.random.default_rng(0)
    train_idx, held_idx = np.flatnonzero(~held), np.flatnonzero(held)
    for _ in range(UPDATES):
        idx = rng.choice(train_idx, BATCH)
        inputs = F.dropout(x[idx], drop) if drop else x[idx]
        loss = F.mse_loss(act(inputs, True), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        train = F.mse_loss(act(x[train_idx[:4000]], False), y[train_idx[:4000]]).item()
        return train, F.mse_loss(act(x[held_idx], False), y[held_idx]).item()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--steps", type=int, default=30_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(str(args.run / "config.yaml"))
    ctx = Context(cfg, Path("/nonexistent"), CPU, progress_bar=False)
    pid = ctx.task.pixel_randomized_id
    s = args.seed
    student = load_for_env(args.run / f"student/seed{s}/policy.pt", lambda: ctx.make_env(pid), CPU, s)
    teacher_path = args.run / f"pretrain_teacher/seed{s}/policy.pt"
    teacher = load_for_env(teacher_path, lambda: gym.make(ctx.task.randomized_id), CPU, s)
    started = time.perf_counter()
    rows, labels, episodes = collect(ctx, student, teacher, args.steps, s)
    names = np.unique(episodes)
    held = np.isin(episodes, np.random.default_rng(0).choice(names, max(1, len(names) // 5), replace=False))
    print(
        f"{len(rows)} rows, {len(names)} episodes ({held.sum()} rows held out), "
        f"{time.perf_counter() - started:.0f} s"
    )
    r2 = ridge_r2(rows.astype(np.float64), labels[:, :4], held)
    print(
        "ridge R^2 on held-out episodes: "
        + ", ".join(f"{n} {v:.3f}" for n, v in zip(("x", "theta", "x_dot", "theta_dot"), r2, strict=True))
    )

    with torch.no_grad():
        y = outputs(teacher.model, torch.as_tensor(normalize(labels, teacher.obs_rms)), value=False).action
    space = teacher.model.action_space
    assert isinstance(space, gym.spaces.Box)
    y = y.clamp(torch.as_tensor(space.low), torch.as_tensor(space.high))  # what the env applies
    print(f"teacher action variance {y[torch.as_tensor(held)].var().item():.3f} (held-out rows)")
    rms = None
    if student.obs_rms is not None:  # the student reads normalized rows (algo.normalize_obs)
        rms = RunningMeanStd(shape=(rows.shape[1],))
        rms.update(rows[~held])
    x = torch.as_tensor(normalize(rows, rms))
    sctx = context_for(ctx, student_config(cfg))
    for name, wd, drop in (
        ("student head", 0.0, 0.0),
        ("+ weight decay 0.1", 0.1, 0.0),
        ("+ input dropout 0.5", 0.0, 0.5),
    ):
        torch.manual_seed(s)
        venv, encoder = policy_env(sctx, pid, s, n_envs=1)
        model = build_model(sctx.cfg.algo, venv, 1e-3, CPU, s, encoder)
        venv.close()

        def act(inputs: torch.Tensor, training: bool, m: Any = model) -> torch.Tensor:
            m.policy.set_training_mode(training)
            return outputs(m, inputs, value=False).action

        train, held_mse = fit(act, model.policy.parameters(), x, y, held, wd, drop)
        print(f"{name:24s} train MSE {train:.4f}  held-out MSE {held_mse:.4f}")
    assert student.encoder.cached is not None, "a camera student has cached features"
    extractor = student.encoder.cached.extractor
    raw = torch.as_tensor(frames_oldest_first(rows, extractor))
    torch.manual_seed(s)
    head = KeypointHead(
        extractor.backbone.tap_channels(extractor.tap),
        extractor.pool,
        extractor.n_frames,
        rows.shape[1] - extractor.pooled_features(),
    )

    def act_kp(inputs: torch.Tensor, training: bool) -> torch.Tensor:
        head.train(training)
        return head(inputs)

    train, held_mse = fit(act_kp, head.parameters(), raw, y, held)
    print(f"{'keypoint head':24s} train MSE {train:.4f}  held-out MSE {held_mse:.4f}")


if __name__ == "__main__":
    main()
