"""What distillation's stages share: the teacher's and the student's view of the experiment.

`teacher_config` / `student_config` turn the experiment into the one each of them trains in (the
privileged view and its encoder; the history window or the camera, and the student's head).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np

from simreal.config import AlgoConfig, ExperimentConfig, PretrainConfig
from simreal.simulation.observation import ObservationConfig, observation_wrapper
from simreal.simulation.privileged import Window
from simreal.training.engine.context import Context

TEACHER, STUDENT = "pretrain_teacher", "student"
PRIVILEGED_EXTRACTOR = "agents.students:PrivilegedExtractor"
HISTORY_EXTRACTOR = "agents.students:HistoryExtractor"


def source_spaces(
    cfg: ExperimentConfig, observation: ObservationConfig
) -> tuple[gym.spaces.Box, gym.spaces.Box]:
    """The randomized source env's spaces as a policy with `observation` sees them (one sim instance)."""
    wrap = observation_wrapper(observation)
    from simreal.simulation.registry import ensure

    env = gym.make(ensure(cfg.task).randomized_id)
    env = wrap(env) if wrap else env
    try:
        return env.observation_space, env.action_space  # type: ignore[return-value]
    finally:
        env.close()


def _with_extractor(algo: AlgoConfig, net_arch: Any, cls: str, kwargs: dict[str, Any]) -> AlgoConfig:
    extra = {**algo.policy_extra, "features_extractor_class": cls, "features_extractor_kwargs": kwargs}
    return algo.model_copy(update={"net_arch": net_arch, "policy_extra": extra})


def teacher_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """The experiment as the privileged teacher trains it: privileged view, the encoder, its budget."""
    assert cfg.distill is not None
    teacher = cfg.distill.teacher
    pretrain = PretrainConfig(timesteps=teacher.timesteps or cfg.pretrain.timesteps, nominal_baseline=False)
    if cfg.pixels:  # a camera student's teacher reads the state the camera stands in for
        algo = cfg.algo.model_copy(update={"net_arch": teacher.net_arch or cfg.algo.net_arch})
        return cfg.model_copy(
            update={"pixels": False, "perception": None, "algo": algo, "pretrain": pretrain}
        )
    base = cfg.observation.model_copy(update={"privileged": False, "history_window": 0})
    obs_space, _ = source_spaces(cfg, base)
    kwargs = {
        "obs_dim": int(np.prod(obs_space.shape)),
        "latent_dim": teacher.latent_dim,
        "hidden": teacher.encoder,
    }
    algo = _with_extractor(cfg.algo, teacher.net_arch or cfg.algo.net_arch, PRIVILEGED_EXTRACTOR, kwargs)
    observation = base.model_copy(update={"privileged": True})
    return cfg.model_copy(update={"observation": observation, "algo": algo, "pretrain": pretrain})


def student_config(cfg: ExperimentConfig, teacher_meta: dict[str, Any] | None = None) -> ExperimentConfig:
    """The experiment as the student sees it: the history window, the history encoder, its head (the
    teacher's network shape unless `distill.student.net_arch`); with a teacher artifact, its latent size
    and observation settings."""
    assert cfg.distill is not None
    distill = cfg.distill
    if cfg.pixels:  # the experiment's camera policy itself (its backbone and head)
        net_arch = distill.student.net_arch or cfg.algo.net_arch
        return cfg.model_copy(update={"algo": cfg.algo.model_copy(update={"net_arch": net_arch})})
    observation = ObservationConfig.model_validate(
        (teacher_meta or {}).get("observation") or cfg.observation.model_dump()
    ).model_copy(update={"privileged": False, "history_window": distill.student.history})
    base = observation.model_copy(update={"history_window": 0})
    obs_space, act_space = source_spaces(cfg, base)
    window = Window(obs_space, act_space, distill.student.history)
    teacher_algo = (
        AlgoConfig.model_validate(teacher_meta["algo"]) if teacher_meta else teacher_config(cfg).algo
    )
    latent = teacher_algo.policy_extra.get("features_extractor_kwargs", {}).get("latent_dim")
    kwargs = {
        "obs_dim": window.obs_dim,
        "step_dim": window.step_dim,
        "steps": window.k,
        "latent_dim": int(latent or distill.teacher.latent_dim),
        "encoder": distill.student.encoder,
        "channels": distill.student.channels,
    }
    net_arch = distill.student.net_arch or teacher_algo.net_arch
    plain = teacher_algo.model_copy(update={"policy_extra": cfg.algo.policy_extra})
    algo = _with_extractor(plain, net_arch, HISTORY_EXTRACTOR, kwargs)
    return cfg.model_copy(update={"observation": observation, "algo": algo})


def context_for(ctx: Context, cfg: ExperimentConfig) -> Context:
    return dataclasses.replace(ctx, cfg=cfg)
