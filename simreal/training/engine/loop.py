"""One training stage (a variant and a seed): vectorized envs, callbacks, checkpoints and resume.

`train_stage` trains `model` for `budget` env steps, evaluating on the target every
`eval.every_steps` (logged as `target/mean_return` against target steps), checkpointing atomically,
and resuming from the stage's checkpoint when one exists. On resume the TensorBoard writer purges
events after the checkpoint's step, so the curve has no duplicated steps.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger, TensorBoardOutputFormat
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import SubprocVecEnv, VecEnv, VecNormalize
from torch.utils.tensorboard import SummaryWriter

from simreal.simulation.accounting import TargetLedger
from simreal.simulation.adr import AdrState
from simreal.simulation.tasks import TaskSpec
from simreal.training.engine.artifacts import atomic_write_text
from simreal.training.engine.evaluation import EvalResult, evaluate
from simreal.training.engine.events import keep_before
from simreal.training.engine.sb3.checkpoints import checkpoint_steps, load_checkpoint, save_checkpoint
from simreal.training.engine.sb3.guards import KeepBest

if TYPE_CHECKING:
    from simreal.training.engine.perception import Encoder

CHECKPOINT = "checkpoint.pt"
CURVE = "curve.json"


def make_vec(
    env_id: str,
    n_envs: int,
    seed: int,
    normalize: bool,
    obs_rms: RunningMeanStd | None,
    update_stats: bool = True,
    wrapper: Callable[[gym.Env[Any, Any]], gym.Env[Any, Any]] | None = None,
    env_kwargs: dict[str, Any] | None = None,
    register: TaskSpec | None = None,
) -> VecEnv:
    """`n_envs` seeded copies of `env_id` (Monitor, then `wrapper`), optionally observation-normalized.
    With `register` (the task's spec), each copy steps in its own process, which registers the task
    first (its ids, its `imports`) - a user's task exists only in the processes that registered it."""
    if register is not None and n_envs > 1:
        factory = functools.partial(_registered_make, register, env_id)
        venv = make_vec_env(
            factory,
            n_envs=n_envs,
            seed=seed,
            wrapper_class=wrapper,
            env_kwargs=env_kwargs,
            vec_env_cls=SubprocVecEnv,
        )
    else:
        venv = make_vec_env(env_id, n_envs=n_envs, seed=seed, wrapper_class=wrapper, env_kwargs=env_kwargs)
    return normalized(venv, normalize, obs_rms, update_stats)


def normalized(venv: VecEnv, normalize: bool, obs_rms: RunningMeanStd | None, update_stats: bool) -> VecEnv:
    """`venv` observation-normalized (with `obs_rms` as its starting statistics), or as it is."""
    if not normalize:
        return venv
    norm = VecNormalize(venv, norm_obs=True, norm_reward=False, training=update_stats)
    if obs_rms is not None:
        norm.obs_rms = obs_rms  # type: ignore[assignment]  # SB3 types it as a dict for Dict spaces
    return norm


def _registered_make(spec: TaskSpec, env_id: str, **kwargs: Any) -> gym.Env[Any, Any]:
    """`gym.make(env_id)` in a process that may not have registered the task yet."""
    from simreal.simulation.registry import ensure

    ensure(spec)
    return gym.make(env_id, **kwargs)


def obs_rms_of(env: VecEnv) -> RunningMeanStd | None:
    """The observation statistics of a VecNormalize env (else None)."""
    rms = env.obs_rms if isinstance(env, VecNormalize) else None
    return rms if isinstance(rms, RunningMeanStd) else None


class _PurgingTensorBoard(TensorBoardOutputFormat):
    """SB3's TensorBoard format, with a writer that drops events at or after `purge_step` (resume)."""

    def __init__(self, folder: str, purge_step: int | None) -> None:
        self.writer = SummaryWriter(log_dir=folder, purge_step=purge_step)
        self._is_closed = False


def stage_logger(folder: Path, purge_step: int | None) -> Logger:
    return Logger(str(folder), [_PurgingTensorBoard(str(folder), purge_step)])


@dataclass
class EvalSchedule:
    """Target evaluation during training: env factory, cadence, episodes and the recorded curve.

    Evaluations happen at rollout starts (between updates), labelled with their nominal step. Their
    target steps are counted under "evaluation" in `ledger`. With `shares_training_env` (an exclusive
    target: one instance) the factory lends the training env itself, and training restarts its episodes
    from a fresh reset after each evaluation."""

    make_env: Callable[[], gym.Env[Any, Any]]
    every_steps: int
    episodes: int
    seed: int
    encoder: Encoder | None = None
    n_envs: int = 1
    curve: list[dict[str, Any]] = field(default_factory=list)
    ledger: TargetLedger | None = None
    shares_training_env: bool = False
    keep: KeepBest | None = None

    def record(self, model: BaseAlgorithm, step: int, obs_rms: RunningMeanStd | None) -> EvalResult:
        with self.ledger.doing("evaluation") if self.ledger else contextlib.nullcontext():
            result = evaluate(
                model, self.make_env, self.episodes, self.seed, obs_rms, self.encoder, self.n_envs
            )
        if self.keep is not None:
            self.keep.observe(step, result.returns, model, obs_rms)
        if self.shares_training_env and model.get_env() is not None:
            restart_episodes(model)
        self.curve.append(curve_point(step, result))
        record_evaluation(model.logger, result)
        dump_evaluation(model.logger, step)
        return result


def restart_episodes(model: BaseAlgorithm) -> None:
    """Reset the training env and tell the algorithm (its next step starts from the new observation)."""
    env = model.get_env()
    assert env is not None
    model._last_obs = env.reset()  # type: ignore[assignment]
    if hasattr(model, "_last_episode_starts"):
        model._last_episode_starts = np.ones((env.num_envs,), dtype=bool)
    if isinstance(env, VecNormalize) and hasattr(model, "_last_original_obs"):
        model._last_original_obs = env.get_original_obs()


class Borrowed(gym.Wrapper[Any, Any, Any, Any]):
    """The training env lent to an evaluation: closing it does nothing (its owner closes it)."""

    def close(self) -> None:
        pass


def curve_point(step: int, result: EvalResult) -> dict[str, Any]:
    """One evaluation of a curve (`curve.json`): the step and the returns' mean, std and success rate."""
    return {
        "step": step,
        "mean_return": result.mean_return,
        "std_return": result.std_return,
        "success_rate": result.success_rate,
    }


def dump_evaluation(logger: Logger, step: int) -> None:
    """Write the evaluation's `target/` values at `step`, and only those: what the algorithm recorded
    since its last dump (its `train/` values) waits for the algorithm's own next dump, so no tag is
    written twice at one step."""
    values, counts, excluded = logger.name_to_value, logger.name_to_count, logger.name_to_excluded
    keys = [k for k in values if not k.startswith("target/")]
    held = {k: (values.pop(k), counts.pop(k, None), excluded.pop(k, None)) for k in keys}
    logger.dump(step)
    for key, (value, count, exclusion) in held.items():
        values[key] = value
        if count is not None:
            counts[key] = count
        if exclusion is not None:
            excluded[key] = exclusion


def record_evaluation(logger: Logger, result: EvalResult) -> None:
    """The TensorBoard tags of a target evaluation: one tag per quantity (`target/...`)."""
    logger.record("target/mean_return", result.mean_return)
    if result.success_rate is not None:
        logger.record("target/success_rate", result.success_rate)


def write_hparams(stage_dir: Path, hparams: dict[str, Any], result: EvalResult) -> None:
    """The stage's settings and final result for TensorBoard's HParams dashboard (`<stage>/hparams/`)."""
    metrics = {"hparams/final_return": result.mean_return}
    if result.success_rate is not None:
        metrics["hparams/final_success_rate"] = result.success_rate
    with SummaryWriter(log_dir=str(stage_dir)) as writer:
        writer.add_hparams(hparams, metrics, run_name="hparams")


class _StageCallback(BaseCallback):
    """At rollout starts checkpoints and evaluates on schedule; logs randomized parameters as histograms."""

    def __init__(
        self,
        stage_dir: Path,
        schedule: EvalSchedule | None,
        checkpoint_every: int,
        log_dynamics: bool,
        on_save: Callable[[], None] | None = None,
        hooks: Sequence[Callable[[int], None]] = (),
        adr: AdrState | None = None,
    ) -> None:
        super().__init__()
        self.on_save = on_save
        self.hooks = list(hooks)
        self.adr = adr
        self.stage_dir = stage_dir
        self.schedule = schedule
        self.checkpoint_every = checkpoint_every
        self.next_checkpoint = checkpoint_every
        self.next_eval = 0
        self.log_dynamics = log_dynamics
        self.dynamics: dict[str, list[float]] = {}
        self.stateful: list[BaseCallback] = []

    def _obs_rms(self) -> RunningMeanStd | None:
        return obs_rms_of(self.training_env)

    def _on_training_start(self) -> None:
        done_steps = self.model.num_timesteps
        self.next_checkpoint = (done_steps // self.checkpoint_every + 1) * self.checkpoint_every
        if self.schedule is not None:
            every = self.schedule.every_steps
            self.next_eval = (done_steps // every) * every
            if self.schedule.curve and self.schedule.curve[-1]["step"] == self.next_eval:
                self.next_eval += every
            self._maybe_eval()

    def _maybe_eval(self) -> None:
        if self.schedule is not None and self.model.num_timesteps >= self.next_eval:
            self.schedule.record(self.model, self.next_eval, self._obs_rms())
            self.next_eval += self.schedule.every_steps

    def _on_step(self) -> bool:
        keep = self.schedule.keep if self.schedule is not None else None
        if keep is not None and keep.stop:
            return False  # early stopping: `patience` evaluations without improvement
        if self.log_dynamics:
            for done, info in zip(self.locals["dones"], self.locals["infos"], strict=True):
                if done and "dynamics" in info:
                    for key, value in info["dynamics"].items():
                        self.dynamics.setdefault(key, []).append(value)
        return True

    def _on_rollout_start(self) -> None:
        for hook in self.hooks:  # e.g. releasing a warmed-up actor, thawing a layer
            hook(self.model.num_timesteps)
        self._maybe_eval()  # between updates: the policy evaluated is the one the next rollout uses
        if self.model.num_timesteps >= self.next_checkpoint:  # after it, so the checkpoint holds it
            self.save()
            self.next_checkpoint += self.checkpoint_every
        if self.adr is not None:
            for label, (low, high) in self.adr.ranges().items():
                self.logger.record(f"adr/{label}/low", low)
                self.logger.record(f"adr/{label}/high", high)
        if self.dynamics:
            for key, values in self.dynamics.items():
                self.logger.record(
                    f"dynamics/{key}", torch.tensor(values), exclude=("stdout", "log", "json", "csv")
                )
            self.dynamics = {}

    def save(self) -> None:
        extra: dict[str, Any] = {
            "curve": self.schedule.curve if self.schedule else [],
            "next_eval": self.next_eval,
        }
        if self.adr is not None:
            extra["adr"] = self.adr.as_dict()
        if self.stateful:
            extra["callbacks"] = stateful(self.stateful)
        save_checkpoint(self.stage_dir / CHECKPOINT, self.model, self._obs_rms(), extra)
        if self.on_save is not None:
            self.on_save()


@runtime_checkable
class Stateful(Protocol):
    """A callback whose state a checkpoint keeps (and `final.json` reports), under its `key`."""

    key: str

    def state(self) -> dict[str, Any]: ...

    def load(self, state: dict[str, Any]) -> None: ...


def stateful(callbacks: Sequence[BaseCallback]) -> dict[str, Any]:
    """The state of the callbacks that keep one, by key."""
    return {c.key: c.state() for c in callbacks if isinstance(c, Stateful)}


def train_stage(
    model: BaseAlgorithm,
    budget: int,
    stage_dir: Path,
    schedule: EvalSchedule | None,
    checkpoint_every: int,
    progress_bar: bool = True,
    log_dynamics: bool = False,
    on_save: Callable[[], None] | None = None,
    hooks: Sequence[Callable[[int], None]] = (),
    adr: AdrState | None = None,
    callbacks: Sequence[BaseCallback] = (),
) -> BaseAlgorithm:
    """Train `model` to `budget` total env steps, resuming from `stage_dir/checkpoint.pt` if present.

    `on_save` runs after each checkpoint; `hooks(step)` at the start and at every rollout start (and
    before a checkpoint is loaded, so the optimizers have the shape they had when it was saved). With
    `schedule.keep` the stage may stop early; the rest of the evaluation grid then holds the kept
    policy's evaluation (its weights no longer change, so re-evaluating it there gives the same number),
    and `model` ends with the kept weights. `callbacks` run before the stage's own at every event (so a
    rate they set is the one the checkpoint records); the stateful ones are checkpointed."""
    ckpt = stage_dir / CHECKPOINT
    purge: int | None = None
    stage_dir.mkdir(parents=True, exist_ok=True)
    for hook in hooks:
        hook(checkpoint_steps(ckpt) if ckpt.exists() else 0)
    if ckpt.exists():
        obs_rms, extra = load_checkpoint(ckpt, model)
        env = model.get_env()
        if obs_rms is not None and isinstance(env, VecNormalize):
            env.obs_rms = obs_rms  # type: ignore[assignment]
        if adr is not None and "adr" in extra:
            adr.load(extra["adr"])
        for callback in callbacks:
            if isinstance(callback, Stateful) and callback.key in extra.get("callbacks", {}):
                callback.load(extra["callbacks"][callback.key])
        if schedule is not None:
            schedule.curve = list(extra["curve"])
            if schedule.keep is not None:
                schedule.keep.resume(schedule.curve)
        purge = model.num_timesteps + 1
    keep_before(stage_dir, purge or 0)  # an interrupted attempt's values past the checkpoint: logged again
    model.set_logger(stage_logger(stage_dir, purge))
    callback = _StageCallback(stage_dir, schedule, checkpoint_every, log_dynamics, on_save, hooks, adr)
    callback.stateful = list(callbacks)
    remaining = budget - model.num_timesteps
    if remaining > 0 and not (schedule is not None and schedule.keep is not None and schedule.keep.stop):
        model.learn(
            remaining,
            callback=CallbackList([*callbacks, callback]),
            reset_num_timesteps=False,
            progress_bar=progress_bar,
        )
    keep = schedule.keep if schedule is not None else None
    if schedule is not None and keep is not None and keep.stop:
        _fill_after_stop(schedule, model, budget)
    elif schedule is not None and (not schedule.curve or schedule.curve[-1]["step"] < budget):
        env = model.get_env()
        schedule.record(model, budget, obs_rms_of(env) if env is not None else None)
    if keep is not None:
        keep.restore(model)
    if schedule is not None:
        atomic_write_text(json.dumps(schedule.curve, indent=1), stage_dir / CURVE)
    return model


def _fill_after_stop(schedule: EvalSchedule, model: BaseAlgorithm, budget: int) -> None:
    """The rest of the grid, after early stopping: the kept policy's evaluation, marked as such."""
    assert schedule.keep is not None
    kept = next(p for p in schedule.curve if p["step"] == schedule.keep.best_step)
    last = schedule.curve[-1]["step"]
    every = schedule.every_steps
    for step in sorted({*range(last + every - last % every, budget, every), budget}):
        if step <= last:
            continue
        schedule.curve.append({**kept, "step": step, "kept_from": schedule.keep.best_step})
        model.logger.record("target/mean_return", kept["mean_return"])
        dump_evaluation(model.logger, step)


def curve_arrays(curve: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    steps = np.array([c["step"] for c in curve], dtype=np.int64)
    returns = np.array([c["mean_return"] for c in curve], dtype=np.float64)
    return steps, returns
