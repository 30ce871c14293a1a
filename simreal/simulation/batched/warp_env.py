"""N worlds of one MJCF in one MuJoCo Warp model, as a stable-baselines3 `VecEnv`.

`WarpVecEnv` steps every world at once (`mujoco_warp.step`, `frame_skip` substeps), computes the
observation, reward and termination of the Gymnasium env it reproduces (`batched.tasks`) on torch
views of Warp's arrays (on the simulation's device), applies the effects (`batched.effects`) on numpy
arrays at SB3's boundary, and resets finished worlds where they stand: each draws its own physics
(`batched.worlds`), effects and initial state - for all worlds resetting together at once, from one
generator seeded by the run's seed (per-step noise from a second one), so a seed repeats a run exactly.

Like `DummyVecEnv` + `Monitor` + `TimeLimit`, a finished world's info has `terminal_observation`,
`TimeLimit.truncated` and `episode` (`r`, `l`, `t`); every step's info has `dynamics` (that world's
values this episode) and `reset_infos` hold `dynamics` and `effects` from the last reset.

Warp compiles its kernels on first use into its kernel cache (`SIMREAL_WARP_CACHE`, else Warp's own
default, `~/.cache/warp/<version>`); `compile_seconds` is how long the first step took.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from simreal.simulation.batched.effects import BatchedEffects
from simreal.simulation.batched.tasks import BatchedTask, State
from simreal.simulation.batched.worlds import WorldPhysics

log = logging.getLogger("simreal")
_reported = False
"""Whether this process has logged a first-step (compile) time yet: later ones go to the debug log."""

CACHE_ENV = "SIMREAL_WARP_CACHE"
"""Environment variable naming Warp's kernel cache directory (default: Warp's own)."""


CLEARED = (
    "time",
    "qvel",
    "qacc",
    "qacc_warmstart",
    "qfrc_applied",
    "xfrc_applied",
    "ctrl",
    "act",
    "act_dot",
    "sensordata",
    "userdata",
)
"""Per-world Data fields a reset zeroes (qpos is set from the task's initial state)."""


def import_warp() -> tuple[Any, Any]:
    """`warp` and `mujoco_warp`, quiet, with the kernel cache where `SIMREAL_WARP_CACHE` says."""
    import warp as wp

    wp.config.log_level = wp.LOG_WARNING
    if os.environ.get(CACHE_ENV):
        wp.config.kernel_cache_dir = os.environ[CACHE_ENV]
    import mujoco_warp as mjw

    wp.init()
    return wp, mjw


def warp_device(device: torch.device) -> str:
    return "cpu" if device.type == "cpu" else f"cuda:{device.index or 0}"


class WarpVecEnv(VecEnv):
    """`nworld` worlds of `host`'s model; `physics`/`effects` optional (the nominal sim has neither)."""

    def __init__(
        self,
        host: gym.Env[Any, Any],
        task: BatchedTask,
        nworld: int,
        seed: int,
        device: torch.device,
        max_episode_steps: int,
        physics: WorldPhysics | None = None,
        effects: BatchedEffects | None = None,
    ) -> None:
        obs_space, act_space = host.observation_space, host.action_space
        assert isinstance(obs_space, gym.spaces.Box) and isinstance(act_space, gym.spaces.Box)
        self.render_mode = None
        super().__init__(nworld, obs_space, act_space)
        wp, mjw = import_warp()
        self._wp, self._mjw = wp, mjw
        self.task, self.physics, self.effects = task, physics, effects
        self.max_episode_steps = max_episode_steps
        self.device = device
        self._wdevice = warp_device(device)
        self._host = host
        mjm = host.unwrapped.model  # type: ignore[attr-defined]
        fields = physics.fields if physics is not None else ()
        sizes = {f: nworld for f in fields if not f.startswith("opt.")}
        with wp.ScopedDevice(self._wdevice):
            self.model = mjw.put_model(mjm, batch_sizes=sizes)
            self.data = mjw.put_data(mjm, mujoco.MjData(mjm), nworld=nworld)
            opt = self.model.opt
            if "opt.gravity" in fields:
                opt.gravity = wp.array(np.tile(mjm.opt.gravity, (nworld, 1)), dtype=wp.vec3)
            if "opt.timestep" in fields:
                opt.timestep = wp.array(np.full(nworld, mjm.opt.timestep), dtype=float)
        self._views = {f: self._view(f) for f in fields}
        self._timestep = wp.to_torch(self.model.opt.timestep)
        self.state = State(
            wp.to_torch(self.data.qpos), wp.to_torch(self.data.qvel), wp.to_torch(self.data.xpos)
        )
        self._ctrl = wp.to_torch(self.data.ctrl)
        # A world's reset zeroes what mujoco_warp.reset_data would and a step reads, through views of
        # those rows (reset_data itself rebuilds its kernels at every call: ~20 ms each on CPU).
        cleared = [getattr(self.data, f) for f in CLEARED if getattr(self.data, f, None) is not None]
        self._cleared = [wp.to_torch(a) for a in cleared if a.size > 0]
        self.compile_seconds: float | None = None
        self._graph: Any = None
        self._seed(seed)
        self._actions = np.zeros((nworld, *act_space.shape), dtype=act_space.dtype)
        self._elapsed = np.zeros(nworld, dtype=np.int64)
        self._returns = np.zeros(nworld)
        self._started = time.perf_counter()

    def _view(self, field: str) -> torch.Tensor:
        obj = self.model.opt if field.startswith("opt.") else self.model
        return self._wp.to_torch(getattr(obj, field.removeprefix("opt.")))

    def _seed(self, seed: int) -> None:
        """Reset draws and per-step noise from two generators of `seed` (and the world count)."""
        self._step_rng = np.random.default_rng(np.random.SeedSequence([seed, self.num_envs, 7]))
        self._reset_rng = np.random.default_rng(np.random.SeedSequence([seed, self.num_envs, 11]))

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        if seed is not None:
            self._seed(seed)
        return [seed for _ in range(self.num_envs)]

    # -- worlds ---------------------------------------------------------------------------------------

    def _reset_worlds(self, worlds: np.ndarray) -> None:
        """Fresh episodes for `worlds`: physics, effects, initial state (Gymnasium's reset_model draws)."""
        wp, mjw = self._wp, self._mjw
        rng = self._reset_rng
        if self.physics is not None:
            self.physics.draw(worlds, rng)
            self.physics.upload(self._views, worlds)
        effects = self.effects.start(worlds, rng) if self.effects is not None else [{} for _ in worlds]
        qpos, qvel = self.task.reset_state(rng, len(worlds))
        index = torch.as_tensor(worlds, device=self.device)
        for view in self._cleared:  # what mj_resetData zeroes and a step reads
            view[index] = 0
        self.state.qpos[index] = torch.as_tensor(qpos, dtype=self.state.qpos.dtype, device=self.device)
        self.state.qvel[index] = torch.as_tensor(qvel, dtype=self.state.qvel.dtype, device=self.device)
        with wp.ScopedDevice(self._wdevice):
            if self.task.forward_at_reset:  # what the observation reads is recomputed for these worlds only
                kept = self.state.xpos.clone()
                self._sync_torch()
                mjw.forward(self.model, self.data)
                self._sync_warp()
                others = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
                others[index] = False
                self.state.xpos[others] = kept[others]
        self._elapsed[worlds] = 0
        self._returns[worlds] = 0.0
        for w, record in zip(worlds, effects, strict=True):
            self.reset_infos[w] = {"dynamics": self._dynamics(w), "effects": record}

    def _simulate(self) -> None:
        """`frame_skip` physics steps of every world (one captured CUDA graph on a GPU). The first call
        compiles (or loads) Warp's kernels: its time is logged, then the graph is captured."""
        wp, mjw = self._wp, self._mjw
        self._sync_torch()
        start = time.perf_counter()
        with wp.ScopedDevice(self._wdevice):
            if self._graph is not None:
                wp.capture_launch(self._graph)
            else:
                for _ in range(self.task.frame_skip):
                    mjw.step(self.model, self.data)
        self._sync_warp()
        if self.compile_seconds is None:
            wp.synchronize()
            self.compile_seconds = time.perf_counter() - start
            global _reported
            log.log(
                logging.DEBUG if _reported else logging.INFO,
                "MuJoCo Warp: first step of %d worlds on %s: %.1f s (kernels compiled or loaded; cache %s)",
                self.num_envs,
                self._wdevice,
                self.compile_seconds,
                wp.config.kernel_cache_dir,
            )
            _reported = True
            self._capture()

    def _sync_torch(self) -> None:
        """On CUDA: torch's writes (controls, states, rows) done before Warp's stream reads them."""
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()

    def _sync_warp(self) -> None:
        """On CUDA: Warp's kernels done before torch reads their results."""
        if self.device.type == "cuda":
            self._wp.synchronize_device(self._wdevice)

    def _capture(self) -> None:
        """On CUDA, record the substeps once as a graph (kernels are compiled by now): one launch per
        step instead of hundreds. The model and data arrays are updated in place, so the graph stays
        valid; if capture fails, steps keep launching kernel by kernel."""
        if self.device.type != "cuda":
            return
        wp, mjw = self._wp, self._mjw
        try:
            with wp.ScopedDevice(self._wdevice), wp.ScopedCapture() as capture:
                for _ in range(self.task.frame_skip):
                    mjw.step(self.model, self.data)
            self._graph = capture.graph  # recorded, not run: the worlds have not moved
        except Exception as err:  # noqa: BLE001 - any capture failure falls back to plain launches
            log.warning("MuJoCo Warp: CUDA graph capture failed (%s); stepping without it", err)
            self._graph = None

    def _dynamics(self, world: int) -> dict[str, float]:
        return self.physics.values[world] if self.physics is not None else {}

    def _observe(self) -> np.ndarray:
        return self.task.observe(self.state).cpu().numpy().astype(self.observation_space.dtype)

    # -- VecEnv ---------------------------------------------------------------------------------------

    def reset(self) -> VecEnvObs:
        worlds = np.arange(self.num_envs)
        self._reset_worlds(worlds)
        obs = self._observe()
        if self.effects is not None:
            obs = self.effects.reset_observation(obs, worlds, self._step_rng)
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=self.action_space.dtype).reshape(self._actions.shape)

    def step_wait(self) -> VecEnvStepReturn:
        applied = self._actions
        if self.effects is not None:
            applied = self.effects.act(applied, self._step_rng)
        action = torch.as_tensor(applied, device=self.device)
        self._ctrl.copy_(action.to(self._ctrl.dtype))
        before = self.task.before_step(self.state)
        self._simulate()
        raw = self.task.observe(self.state)
        terminated_t = self.task.terminated(raw)
        dt = self._timestep * self.task.frame_skip
        reward = self.task.reward(self.state, action.to(raw.dtype), raw, terminated_t, before, dt)
        obs = raw.cpu().numpy().astype(self.observation_space.dtype)
        terminated = terminated_t.cpu().numpy()
        rewards = reward.cpu().numpy().astype(np.float32)
        if self.effects is not None:
            obs = self.effects.observe(obs, self._step_rng)
        self._elapsed += 1
        self._returns += rewards
        truncated = self._elapsed >= self.max_episode_steps
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [
            {"dynamics": self._dynamics(w), "TimeLimit.truncated": False} for w in range(self.num_envs)
        ]
        worlds = np.flatnonzero(dones)
        if len(worlds):
            now = time.perf_counter() - self._started
            for w in worlds:
                infos[w]["terminal_observation"] = obs[w].copy()
                infos[w]["TimeLimit.truncated"] = bool(truncated[w] and not terminated[w])
                infos[w]["episode"] = {
                    "r": round(float(self._returns[w]), 6),
                    "l": int(self._elapsed[w]),
                    "t": now,
                }
            if self.physics is not None:
                self.physics.end_episodes(worlds, self._returns[worlds])
            self._reset_worlds(worlds)
            fresh = self._observe()
            if self.effects is not None:
                fresh = self.effects.reset_observation(fresh, worlds, self._step_rng)
            obs[worlds] = fresh[worlds]
        return obs, rewards, dones, infos

    def close(self) -> None:
        self._host.close()

    # -- attribute access (one host env stands for every world) ---------------------------------------

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        result = getattr(self, method_name)(*method_args, **method_kwargs)  # once: one object for all
        return [result for _ in self._get_indices(indices)]

    def env_is_wrapped(
        self, wrapper_class: type[gym.Wrapper[Any, Any, Any, Any]], indices: VecEnvIndices = None
    ) -> list[bool]:
        from stable_baselines3.common.monitor import Monitor

        return [wrapper_class is Monitor for _ in self._get_indices(indices)]
