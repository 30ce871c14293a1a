"""Batched randomized simulation: N worlds of a MuJoCo task in one MuJoCo Warp model (`sim_backend: warp`).

`make_batched(task, randomized, nworld, seed, device)` builds the `VecEnv` a pretraining stage trains
on: the task's randomized (or nominal) source sim, every world with its own physics and effects drawn
at its own resets, from the same YAML and with the same validation as the Gymnasium path
(`simreal.simulation.variants.make_source`); its refusals are one line each. `check_batched` makes
them without building the Warp model (preflight). Target envs never run here: fine-tuning, scratch and
evaluation use the target's Gymnasium env, so a policy pretrained on either backend meets the same target.

Supported: tasks whose env is one of Gymnasium's `InvertedPendulum-v5`, `Reacher-v5`, `HalfCheetah-v5`
(any constructor arguments); physics parameters `body_mass`, `friction`, `joint_damping`,
`actuator_gain`, `gravity`, `timestep`; every built-in effect but `control_jitter`. Not supported (one
line each): PyBullet or other envs without a batched version, `frame_skip` and `CustomParam`s,
`resample_every_steps`, user effects. With `randomization.adr` every world pins edges and files its
returns into the one ADR state, so thousands of worlds fill its buffers quickly.
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import mujoco
import torch

from simreal.schema import ConfigError
from simreal.simulation.adr import AdrState
from simreal.simulation.batched.effects import BatchedEffects, check_effects
from simreal.simulation.batched.tasks import SUPPORTED, BatchedTask, batched_task
from simreal.simulation.batched.worlds import WorldPhysics, batched_fields
from simreal.simulation.registry import Task

MEMORY_FRACTION = 0.5
"""Fraction of the device's free memory a batched model's worlds may take (checked before building)."""


def _host(task: Task) -> tuple[gym.Env[Any, Any], BatchedTask]:
    host = gym.make(task.nominal_id)
    batched = batched_task(host)
    if batched is None:
        name = type(host.unwrapped).__name__
        host.close()
        raise ConfigError(
            f"sim_backend: warp has no batched version of {task.spec.env} ({name}) "
            f"(allowed: tasks on {SUPPORTED}; or sim_backend: gymnasium)"
        )
    return host, batched


def check_batched(task: Task, nworld: int, device: torch.device) -> None:
    """Every refusal `make_batched` would raise, without building a Warp model (preflight): the task's env
    has a batched version, its randomization and source effects a per-world form, and `nworld` worlds fit
    in half the device's free memory (estimated from one world's arrays)."""
    spec = task.spec
    host, _ = _host(task)
    model = host.unwrapped.model  # type: ignore[attr-defined]
    host.close()
    batched_fields(spec.randomization, f"{spec.source}: randomization")
    check_effects(spec.source_effects, f"{spec.source}: source_effects")
    per_world = 2 * mujoco.MjData(model).nbuffer  # Warp's per-world arrays measure about half of this
    need = per_world * nworld
    free = _free_memory(device)
    if need > MEMORY_FRACTION * free:
        most = int(MEMORY_FRACTION * free // per_world)
        raise ConfigError(
            f"algo.n_envs: {nworld:,} worlds need about {need / 2**30:.1f} GiB, more than half of the "
            f"{free / 2**30:.1f} GiB free on {device.type} (allowed: <= {most:,} worlds here)"
        )


def _free_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def make_batched(
    task: Task, randomized: bool, nworld: int, seed: int, device: torch.device, adr: AdrState | None = None
) -> Any:
    """The task's randomized (or nominal) source sim as `nworld` worlds of one Warp model (a VecEnv);
    `adr`: with `randomization.adr`, the state its worlds draw from and grow (else one is made)."""
    from simreal.simulation.batched.warp_env import WarpVecEnv

    host, batched = _host(task)
    spec = task.spec
    physics = effects = None
    if randomized and spec.randomization.params:
        r = spec.randomization
        if adr is None and r.adr is not None:
            adr = AdrState.for_entries(r.adr, r.params)
        physics = WorldPhysics(host, r, nworld, f"{spec.source}: randomization", adr)
    if randomized and spec.source_effects:
        obs, act = host.observation_space, host.action_space
        assert isinstance(obs, gym.spaces.Box) and isinstance(act, gym.spaces.Box)
        effects = BatchedEffects(spec.source_effects, nworld, act, obs, f"{spec.source}: source_effects")
    limit = task.env.max_episode_steps
    assert limit is not None  # the registry refuses an env without one
    return WarpVecEnv(host, batched, nworld, seed, device, limit, physics, effects)
