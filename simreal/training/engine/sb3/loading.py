"""Saved policies rebuilt for an env: the algorithm, its weights, normalization and frozen encoder.

One rebuild path for every consumer (zero-shot evaluation, `simreal evaluate`, sweeps): the artifact's
algorithm config builds the model on the env (spaces checked), its weights are loaded, and the
observation wrappers and perception it was trained with are applied again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.algorithms import make_model
from simreal.config import AlgoConfig
from simreal.sections import PerceptionConfig
from simreal.simulation.observation import ObservationConfig, observation_wrapper
from simreal.simulation.references import is_reference, load_attr
from simreal.training.engine.artifacts import (
    ArtifactError,
    PolicyArtifact,
    SpacesEnv,
    check_spaces,
    load_policy,
    load_torch_state,
)
from simreal.training.engine.perception import Encoder, attach


def build_model(
    algo: AlgoConfig, env: Any, lr: Any, device: torch.device, seed: int, encoder: Encoder | None = None
) -> BaseAlgorithm:
    """The configured algorithm on `env` at learning rate (or schedule) `lr`, with the encoder's head."""
    policy_kwargs = {**algo.policy_kwargs(), **(encoder.policy_kwargs if encoder else {})}
    policy: Any = algo.policy
    if policy == "MlpPolicy" and isinstance(env.observation_space, gym.spaces.Dict):
        policy = "MultiInputPolicy"  # images with state or action history, reaching the policy as a Dict
    elif is_reference(policy):
        policy = load_attr(policy, "algo.policy")  # a policy class of one's own (e.g. the multi-task one)
    return make_model(algo.name, policy, env, lr, policy_kwargs, dict(algo.kwargs), device, seed)


@dataclass(frozen=True)
class LoadedPolicy:
    """A saved policy rebuilt for an env: model, normalization statistics, encoder and an env factory
    that applies the observation wrappers the policy was trained with."""

    model: BaseAlgorithm
    obs_rms: Any
    encoder: Encoder
    make_env: Callable[[], gym.Env[Any, Any]]


def _rebuild(
    art: PolicyArtifact, env: Any, device: torch.device, seed: int, encoder: Encoder
) -> BaseAlgorithm:
    """The algorithm of `art` built on `env` (spaces checked) with `art`'s weights."""
    check_spaces(art.meta, env.observation_space, env.action_space)
    algo = AlgoConfig.model_validate(art.meta["algo"])
    model = build_model(algo, env, algo.pretrain_lr, device, seed, encoder)
    load_torch_state(model, art.states, art.tensors, include_optimizers=False)
    return model


def load_for_env(
    path: Path,
    make_base: Callable[[], gym.Env[Any, Any]],
    device: torch.device,
    seed: int,
    observation: ObservationConfig | None = None,
) -> LoadedPolicy:
    """Rebuild a saved policy for the env `make_base` builds, with the observation wrappers and perception
    it was trained with (or `observation`'s: a multi-task policy given the held-out task's id). The model
    is built on the artifact's spaces, so no env instance is opened here; `LoadedPolicy.make_env` opens
    one when the caller evaluates (and the spaces are checked then)."""
    art = load_policy(path, device)
    seen = observation or ObservationConfig.model_validate(art.meta.get("observation") or {})
    wrapper = observation_wrapper(seen)
    perception = art.meta.get("perception")
    raw = _env_spaces(art)
    spaces = DummyVecEnv([lambda: SpacesEnv.of(raw)])
    venv, encoder = attach(
        PerceptionConfig.model_validate(perception) if perception else None, spaces, device
    )
    encoder.load_backbone_state(art.backbone)
    model = _rebuild(art, venv, device, seed, encoder)

    def make_env() -> gym.Env[Any, Any]:
        base = make_base()
        env = wrapper(base) if wrapper else base
        try:
            check_spaces(raw, env.observation_space, env.action_space)
        except ArtifactError:
            env.close()
            raise
        return env

    return LoadedPolicy(model, art.obs_rms, encoder, make_env)


def _env_spaces(art: PolicyArtifact) -> dict[str, Any]:
    """The spaces the policy's env must have (observation wrappers applied, before perception turns
    images into features)."""
    return {
        "observation_space": art.meta.get("env_observation_space", art.meta["observation_space"]),
        "action_space": art.meta["action_space"],
    }


def load_model(path: Path, env: Any, device: torch.device, seed: int) -> tuple[BaseAlgorithm, Any]:
    """Rebuild a saved state-based policy on `env` (spaces checked); returns (model, its statistics).

    Policies with a perception backbone need `load_for_env`, which rebuilds the frozen encoder too."""
    art = load_policy(path, device)
    if art.meta.get("perception"):
        raise ArtifactError(f"{path}: a pixel policy with a backbone; load it with load_for_env")
    return _rebuild(art, env, device, seed, Encoder({})), art.obs_rms
