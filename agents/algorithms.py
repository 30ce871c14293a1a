"""Algorithm construction over stable-baselines3 (and sb3-contrib), by name.

Example:
    >>> algo_class("SAC")
    <class 'stable_baselines3.sac.sac.SAC'>
    >>> policy_kwargs_from(net_arch=[64, 64], activation="tanh")
    {'net_arch': [64, 64], 'activation_fn': <class 'torch.nn.modules.activation.Tanh'>}
"""

from __future__ import annotations

import importlib
import inspect
import numbers
from typing import Any

import torch.nn as nn
from stable_baselines3.common.base_class import BaseAlgorithm

SB3_ALGOS: dict[str, str] = {
    "A2C": "stable_baselines3:A2C",
    "DDPG": "stable_baselines3:DDPG",
    "DQN": "stable_baselines3:DQN",
    "PPO": "stable_baselines3:PPO",
    "SAC": "stable_baselines3:SAC",
    "TD3": "stable_baselines3:TD3",
    "ARS": "sb3_contrib:ARS",
    "CrossQ": "sb3_contrib:CrossQ",
    "QRDQN": "sb3_contrib:QRDQN",
    "RecurrentPPO": "sb3_contrib:RecurrentPPO",
    "TQC": "sb3_contrib:TQC",
    "TRPO": "sb3_contrib:TRPO",
}

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}

# Arguments the framework sets itself; a config may not pass them through `algo.kwargs`.
RESERVED_KWARGS = frozenset(
    {
        "policy",
        "env",
        "learning_rate",
        "device",
        "seed",
        "tensorboard_log",
        "verbose",
        "policy_kwargs",
        "_init_setup_model",
    }
)


def algo_class(name: str) -> type[BaseAlgorithm]:
    """The SB3 / sb3-contrib class called `name`; a clear error for unknown names or a missing extra."""
    if name not in SB3_ALGOS:
        raise ValueError(f"algo.name: unknown algorithm {name!r} (allowed: {', '.join(SB3_ALGOS)})")
    module_name, attr = SB3_ALGOS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"algo.name: {name} needs the package {module_name} ({err})") from None
    cls: type[BaseAlgorithm] = getattr(module, attr)
    return cls


def kwarg(name: str, kwargs: dict[str, Any], key: str) -> Any:
    """`kwargs[key]`, else the constructor's default for it (None when it takes no such argument)."""
    if key in kwargs:
        return kwargs[key]
    param = inspect.signature(algo_class(name).__init__).parameters.get(key)
    return None if param is None or param.default is inspect.Parameter.empty else param.default


# Counts that SB3 takes as positive integers although a zero or negative value reaches its constructor
# (it fails later, in `learn()`); beside them, every int argument with a positive default must be >= 1.
_MAY_BE_ZERO = frozenset({"learning_starts", "stats_window_size"})
_MAY_BE_MINUS_ONE = frozenset({"gradient_steps"})  # -1: as many gradient steps as env steps


def _hints(cls: type[BaseAlgorithm]) -> dict[str, Any]:
    """The constructor's annotations as evaluated (only plain classes such as `int` are used)."""
    return dict(getattr(cls.__init__, "__annotations__", {}))


def _check_value(name: str, key: str, value: Any, hint: Any, default: Any) -> None:
    """Reject a value of the wrong plain type (int, float, bool, str) or a non-positive count."""
    where = f"algo.kwargs.{key}"
    is_bool = isinstance(value, bool)
    if hint is bool and not is_bool:
        raise ValueError(f"{where}: {name} takes true or false, got {value!r}")
    if hint is int:
        if is_bool or not isinstance(value, numbers.Integral):
            raise ValueError(f"{where}: {name} takes an integer, got {value!r}")
        positive_default = isinstance(default, int) and not isinstance(default, bool) and default > 0
        if positive_default and key not in _MAY_BE_ZERO and value < 1:
            if not (key in _MAY_BE_MINUS_ONE and value == -1):
                extra = " or -1" if key in _MAY_BE_MINUS_ONE else ""
                raise ValueError(f"{where}: must be >= 1{extra}, got {value}")
        if key in _MAY_BE_ZERO and value < 0:
            raise ValueError(f"{where}: must be >= 0, got {value}")
    if hint is float and (is_bool or not isinstance(value, numbers.Real)):
        raise ValueError(f"{where}: {name} takes a number, got {value!r}")
    if hint is str and not isinstance(value, str):
        raise ValueError(f"{where}: {name} takes a string, got {value!r}")


def check_algo_kwargs(name: str, kwargs: dict[str, Any]) -> None:
    """Reject keys the algorithm's constructor does not take, and values of the wrong plain type.

    What the types cannot tell (a combination SB3 refuses) is left to a dry-run construction of the
    model on the task's env, before any training (`simreal.training.engine.preflight`)."""
    cls = algo_class(name)
    params = inspect.signature(cls.__init__).parameters
    allowed = sorted(k for k in params if k not in RESERVED_KWARGS and k != "self" and k != "kwargs")
    hints = _hints(cls)
    for key, value in kwargs.items():
        if key in RESERVED_KWARGS:
            raise ValueError(
                f"algo.kwargs.{key}: set by the framework, not here (use the dedicated config key)"
            )
        if key not in params:
            raise ValueError(f"algo.kwargs.{key}: not an argument of {name} (allowed: {', '.join(allowed)})")
        _check_value(name, key, value, hints.get(key), params[key].default)


def policy_kwargs_from(
    net_arch: list[int] | dict[str, list[int]] | None = None,
    activation: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """SB3 `policy_kwargs` from plain config values (activation by name, never by eval; a class such as
    `features_extractor_class` as a `"module:Class"` string, imported here)."""
    kwargs: dict[str, Any] = {
        key: resolve_class(key, value) if key.endswith("_class") and isinstance(value, str) else value
        for key, value in (extra or {}).items()
    }
    if net_arch is not None:
        kwargs["net_arch"] = net_arch if isinstance(net_arch, list) else dict(net_arch)
    if activation is not None:
        if activation not in ACTIVATIONS:
            raise ValueError(f"algo.activation: unknown {activation!r} (allowed: {', '.join(ACTIVATIONS)})")
        kwargs["activation_fn"] = ACTIVATIONS[activation]
    return kwargs


def resolve_class(key: str, value: str) -> Any:
    """The class a `"module:Class"` string names (policy_extra.<key>)."""
    module_name, _, attr = value.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(
            f"algo.policy_extra.{key}: cannot import {value!r} (allowed: 'module:Class'; {err})"
        ) from None


def rollout_steps(name: str, kwargs: dict[str, Any], n_envs: int) -> int:
    """Env steps between two updates: SB3's `learn(total)` trains in whole rollouts of this size
    (on-policy: `n_steps` per env; off-policy: `train_freq` steps per env; episodes count as 1)."""
    params = inspect.signature(algo_class(name).__init__).parameters
    if "n_steps" in params:
        return int(kwargs.get("n_steps", params["n_steps"].default)) * n_envs
    if "train_freq" in params:
        freq = kwargs.get("train_freq", params["train_freq"].default)
        steps = freq if isinstance(freq, int) else int(freq[0]) if str(freq[1]).startswith("step") else 1
        return steps * n_envs
    return n_envs


def default_learning_rate(name: str) -> float:
    """The constructor default learning rate of algorithm `name` (a float)."""
    default = inspect.signature(algo_class(name).__init__).parameters["learning_rate"].default
    if not isinstance(default, float | int):
        raise ValueError(f"algo.learning_rate: {name} has no numeric default; set it in the config")
    return float(default)


def make_model(
    name: str,
    policy: str,
    env: Any,
    learning_rate: float | Any,
    policy_kwargs: dict[str, Any],
    kwargs: dict[str, Any],
    device: Any,
    seed: int | None,
) -> BaseAlgorithm:
    """Construct algorithm `name` on `env`; `learning_rate` may be a float or an SB3 schedule."""
    cls = algo_class(name)
    check_algo_kwargs(name, kwargs)
    model: BaseAlgorithm = cls(
        policy,
        env,
        learning_rate=learning_rate,
        policy_kwargs=policy_kwargs,
        device=device,
        seed=seed,
        verbose=0,
        **kwargs,
    )
    return model
