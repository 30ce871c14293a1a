"""`pretrain_meta`: Reptile over tasks drawn from the task's randomization, the inner loop being this
experiment's own fine-tuning.

The tasks: `meta.tasks` fixed draws of the randomized physics and effects (inside the ranges or at their
edges: `simreal.simulation.panel.draw_panel` with no room beyond), registered as the targets of a derived
task (`<Task>Meta<digest>`) - sim envs, not counted as target steps. Each outer step k of K adapts the
current initialization to `meta.batch` of them in turn (chosen by seed and k): the configured algorithm
on the task's env at the fine-tuning rate (`finetune.lr_factor` x the pretraining rate, its warm-up and
decay; a fixed rate where fine-tuning adapts it), `finetune.freeze_features` and `freeze_layers` frozen,
for `meta.inner_steps` sim steps; then `theta += step_size * (1 - k / K) * mean(adapted - theta)`. The
observation statistics go on through every inner loop. A checkpoint after every outer step makes the
stage resumable; `meta.json` records the tasks, the steps and the inner loops' returns, and TensorBoard
`meta/step_size`, `meta/inner_return`, `meta/update_norm`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecEnv
from torch.utils.tensorboard import SummaryWriter

from simreal.simulation.panel import draw_panel
from simreal.simulation.registry import Task, ensure
from simreal.simulation.tasks import load_task
from simreal.training.engine import artifacts as art
from simreal.training.engine.artifacts import atomic_write_text, load_policy, save_policy
from simreal.training.engine.context import Context
from simreal.training.engine.loop import obs_rms_of
from simreal.training.engine.sb3 import transfer as tr
from simreal.training.engine.sb3.loading import build_model
from simreal.training.engine.schedules import AdaptiveRate
from simreal.training.engine.stage import POLICY, policy_env, policy_meta
from simreal.training.methods.finetune import learning_rate
from simreal.training.methods.meta.reptile import State, cloned, reptile_update

log = logging.getLogger("simreal")

STAGE = "pretrain_meta"
CHECKPOINT = "meta_checkpoint.pt"
SUMMARY = "meta.json"


def meta_task(ctx: Context, seed: int) -> Task:
    """The meta-training tasks of a seed, as the targets of a derived task registered in this process."""
    assert ctx.cfg.meta is not None
    drawn = draw_panel(ctx.cfg.task, ctx.cfg.meta.tasks, seed, beyond=1.0, stream=(29,))
    data = ctx.cfg.task.model_dump(mode="json")
    data["targets"] = {name: target for name, (target, _) in drawn.items()}
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:8]
    data["name"] = f"{ctx.cfg.task.name}Meta{digest}"
    return ensure(load_task(data, where=f"meta tasks of {ctx.cfg.task.name}"))


def inner_model(
    ctx: Context, env_id: str, seed: int, theta: State, rms: RunningMeanStd | None
) -> tuple[BaseAlgorithm, VecEnv]:
    """The configured fine-tuning of weights `theta` on `env_id`: its rate, its frozen layers."""
    cfg, ft = ctx.cfg, ctx.cfg.finetune
    venv, encoder = policy_env(ctx, env_id, seed, obs_rms=rms, update_stats=True)
    rate = learning_rate(cfg)
    model = build_model(
        cfg.algo, venv, cfg.finetune_lr if isinstance(rate, AdaptiveRate) else rate, ctx.device, seed, encoder
    )
    model.policy.load_state_dict(theta)
    if ft.freeze_features:
        tr.freeze_features(model)
    tr.freeze_layers(model, ft.freeze_layers)
    tr.rebuild_optimizers(model)
    return model, venv


def _start(ctx: Context, seed: int, randomized: Path) -> tuple[State, RunningMeanStd | None, int]:
    """The initialization meta-training starts from and the sim steps already in it."""
    assert ctx.cfg.meta is not None
    if ctx.cfg.meta.init == "randomized":
        source = load_policy(randomized, ctx.device)
        model, venv = _shell(ctx, seed, None)
        art.load_torch_state(model, source.states, source.tensors, include_optimizers=False)
        venv.close()
        return cloned(model.policy.state_dict()), source.obs_rms, ctx.cfg.pretrain.timesteps
    model, venv = _shell(ctx, seed, None)
    venv.close()
    return cloned(model.policy.state_dict()), None, 0


def _shell(ctx: Context, seed: int, rms: RunningMeanStd | None) -> tuple[BaseAlgorithm, VecEnv]:
    """A model of the configured algorithm on the randomized sim (its weights to be set)."""
    venv, encoder = policy_env(ctx, ctx.source_id(True), seed, n_envs=1, obs_rms=rms, update_stats=False)
    return build_model(ctx.cfg.algo, venv, ctx.cfg.algo.pretrain_lr, ctx.device, seed, encoder), venv


def pretrain_meta(ctx: Context, seed: int, randomized: Path) -> Path:
    """Meta-train the initialization (see the module docstring); returns its policy artifact."""
    torch.set_num_threads(ctx.cfg.torch_threads)
    m = ctx.cfg.meta
    assert m is not None
    out = ctx.stage_dir(STAGE, seed)
    if (out / POLICY).exists():
        return out / POLICY
    out.mkdir(parents=True, exist_ok=True)
    task = meta_task(ctx, seed)
    names = list(task.spec.targets)
    outer = m.outer_steps(ctx.cfg)
    if (out / CHECKPOINT).is_file():
        saved = art.safe_load(out / CHECKPOINT)
        theta, rms, k0, history = saved["theta"], art.rms_from(saved["obs_rms"]), saved["k"], saved["history"]
        init_steps = saved["init_steps"]
    else:
        theta, rms, init_steps = _start(ctx, seed, randomized)
        k0, history = 0, []
    log.info(
        "%s seed %d: %d outer steps over %d tasks of %s -> %s", STAGE, seed, outer, len(names), task.name, out
    )
    with SummaryWriter(
        log_dir=str(out), purge_step=k0 * m.batch * m.inner_steps + 1 if k0 else None
    ) as writer:
        for k in range(k0, outer):
            step = m.step_size * (1.0 - k / outer)
            chosen = np.random.default_rng([seed, 29, k]).choice(
                len(names), size=m.batch, replace=m.batch > len(names)
            )
            adapted, returns = [], []
            for j, t in enumerate(chosen):
                model, venv = inner_model(
                    ctx, task.target_id(names[t]), seed * 100_003 + k * 101 + j, theta, rms
                )
                model.learn(m.inner_steps, progress_bar=False)
                adapted.append(cloned(model.policy.state_dict()))
                rms = obs_rms_of(venv)
                returns += [float(e["r"]) for e in model.ep_info_buffer or ()]
                venv.close()
            before = theta
            theta = reptile_update(theta, adapted, step)
            norm = float(
                sum(
                    ((theta[key] - before[key]).float() ** 2).sum()
                    for key in theta
                    if torch.is_floating_point(theta[key])
                )
                ** 0.5
            )
            done = (k + 1) * m.batch * m.inner_steps
            inner_return = float(np.mean(returns)) if returns else float("nan")
            history.append(
                {
                    "k": k,
                    "tasks": [names[t] for t in chosen],
                    "step_size": step,
                    "inner_return": inner_return,
                    "update_norm": norm,
                }
            )
            writer.add_scalar("meta/step_size", step, done)
            writer.add_scalar("meta/inner_return", inner_return, done)
            writer.add_scalar("meta/update_norm", norm, done)
            state = {
                "format": art.FORMAT,
                "kind": "meta_checkpoint",
                "theta": theta,
                "obs_rms": art.rms_state(rms),
                "k": k + 1,
                "history": history,
                "init_steps": init_steps,
            }
            art.atomic_save(state, out / CHECKPOINT)
    model, venv = _shell(ctx, seed, rms)
    model.policy.load_state_dict(theta)
    meta_steps = outer * m.batch * m.inner_steps
    record: dict[str, Any] = {
        "init": m.init,
        "init_steps": init_steps,
        "meta_steps": meta_steps,
        "sim_steps": init_steps + meta_steps,
        "outer_steps": outer,
        "batch": m.batch,
        "inner_steps": m.inner_steps,
        "tasks": {name: task.spec.targets[name].description for name in names},
        "history": history,
    }
    meta = {
        **policy_meta(ctx, STAGE, seed, ctx.source_id(True), venv),
        "meta_learning": {k: record[k] for k in ("init", "init_steps", "meta_steps", "sim_steps")},
    }
    save_policy(model, rms, meta, out / POLICY)
    venv.close()
    atomic_write_text(json.dumps(record, indent=1), out / SUMMARY)
    return out / POLICY
