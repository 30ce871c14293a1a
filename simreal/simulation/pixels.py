"""Pixel observations: the rendered frame as the observation, frame stacking and camera sensor noise.

Images follow SB3's convention: channels-last `Box(0, 255, (H, W, C), uint8)`; SB3 transposes them for
its CNNs itself. The env must render `rgb_array` frames of the requested size: make Gymnasium MuJoCo envs
with `render_mode="rgb_array", width=size, height=size` and KukaReach with `image_size=size`.

Order of composition, innermost first (see `variants`): nominal env -> `RandomizeDynamics` ->
`RandomizeVisuals` -> action-side effects -> `PixelObservation` -> `ImageNoise` -> `StackFrames`.
Visual parameters are applied at reset before `PixelObservation` renders, so an episode's first frame
already shows its look; each frame is rendered once per step and noised once before it is stacked.

Example:
    >>> env = gym.make("simreal/InvertedPendulum-v0", render_mode="rgb_array", width=64, height=64)
    >>> env = StackFrames(PixelObservation(env, image_size=64), n=3)
    >>> obs, info = env.reset(seed=0)  # uint8 (64, 64, 9), the newest frame in the last 3 channels
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any, ClassVar, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from simreal.simulation.effects.base import Array, NoiseStream, ObservationEffect
from simreal.simulation.effects.params import NON_NEGATIVE, Param, ScalarLike

IMAGE_KEY = "image"
STATE_KEY = "state"
SIM_STATE_KEY = "sim_state"
"""The full state beside the image, for a teacher labelling a camera student - never a policy input."""
StepResult = tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]


def _image_box(space: gym.Space[Any], wrapper: str) -> spaces.Box:
    """The image Box of a pixel observation space (the space itself, or its "image" entry)."""
    box = space[IMAGE_KEY] if isinstance(space, spaces.Dict) else space
    if not isinstance(box, spaces.Box) or box.dtype != np.uint8 or len(box.shape) != 3:
        raise ValueError(
            f"{wrapper} needs uint8 (H, W, C) images (a Box or a Dict with 'image'), got {space}"
        )
    return box


def _with_image(obs: Any, image: Array) -> Any:
    """`obs` with its image replaced: the image itself, or a copy of the dict with a new "image"."""
    if isinstance(obs, dict):
        return {**obs, IMAGE_KEY: image}
    return image


class PixelObservation(gym.Wrapper[Any, Any, Any, Any], gym.utils.RecordConstructorArgs):
    """Observe the rendered RGB frame (uint8, (size, size, 3)) instead of the state.

    With `proprio=True` the observation is a Dict `{"image": frame, "state": the inner observation}`
    (with `state_dims`, only those dimensions of it: the joint encoders without the goal, say). With
    `sim_state=True` the Dict also carries the whole inner observation under `"sim_state"`, what a state
    teacher reads while it labels a camera student.
    The frame is rendered once per `reset` and once per `step`, after the inner env has moved.
    """

    def __init__(
        self,
        env: gym.Env[Any, Any],
        image_size: int = 64,
        proprio: bool = False,
        state_dims: Sequence[int] | None = None,
        sim_state: bool = False,
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, image_size=image_size, proprio=proprio, state_dims=state_dims, sim_state=sim_state
        )
        gym.Wrapper.__init__(self, env)
        if image_size < 1:
            raise ValueError(f"PixelObservation: image_size must be >= 1, got {image_size}")
        if env.render_mode != "rgb_array":
            raise ValueError(
                f"PixelObservation needs an env made with render_mode='rgb_array', got {env.render_mode!r}"
            )
        self.image_size = int(image_size)
        self.proprio = proprio
        self.sim_state = sim_state
        self._release: weakref.finalize[Any, Any] | None = None
        image = spaces.Box(0, 255, (self.image_size, self.image_size, 3), dtype=np.uint8)
        state = env.observation_space
        self._dims = None if state_dims is None else np.asarray(state_dims, dtype=np.intp)
        if self._dims is not None:
            size = state.shape[0] if isinstance(state, spaces.Box) and len(state.shape) == 1 else 0
            if not proprio or not len(self._dims) or self._dims.min() < 0 or self._dims.max() >= size:
                raise ValueError(
                    f"PixelObservation: state_dims {self._dims.tolist()} need proprio=True and indices of "
                    f"the env's state vector {state} (allowed: 0..{size - 1})"
                )
            assert isinstance(state, spaces.Box)
            state = spaces.Box(state.low[self._dims], state.high[self._dims], dtype=state.dtype)
        entries: dict[str, spaces.Space[Any]] = {IMAGE_KEY: image}
        if proprio:
            entries[STATE_KEY] = state
        if sim_state:
            entries[SIM_STATE_KEY] = env.observation_space
        self.observation_space = spaces.Dict(entries) if len(entries) > 1 else image

    def _render(self) -> Any:
        """One frame, drawn in this env's own OpenGL context.

        Gymnasium's MuJoCo renderer makes its context current only when it holds several viewers, so with
        several envs in one process (a DummyVecEnv, a source and a target) a frame would be drawn in
        whichever context was made current last - or in a freed one - and come back black or wrong.
        """
        viewer = self._mujoco_viewer()
        if viewer is not None:
            viewer.make_context_current()
        frame = self.env.render()
        if self._release is None and (viewer := self._mujoco_viewer()) is not None:
            self._release = weakref.finalize(self, _free_gl_objects, viewer)
            self._release.atexit = False
        return frame

    def _mujoco_viewer(self) -> Any:
        """The offscreen viewer of a Gymnasium MuJoCo env once it has rendered, else None."""
        return getattr(getattr(self.env.unwrapped, "mujoco_renderer", None), "viewer", None)

    def close(self) -> None:
        """Close the env; for MuJoCo first free the renderer's GL objects while its own context is current.

        Gymnasium destroys the OpenGL context first and leaves MuJoCo's render context to the garbage
        collector, which then deletes its GL objects in whatever context is current - another env's,
        whose frames turn black. The same cleanup runs when this wrapper is garbage-collected unclosed.
        """
        if self._release is not None:
            self._release()
        super().close()

    def _observe(self, state: Any) -> Any:
        frame = self._render()
        expected = (self.image_size, self.image_size, 3)
        if not isinstance(frame, np.ndarray) or frame.shape != expected or frame.dtype != np.uint8:
            got = frame.shape if isinstance(frame, np.ndarray) else type(frame).__name__
            raise ValueError(
                f"PixelObservation: env rendered {got}, expected uint8 {expected}; make it with a "
                f"matching frame size (MuJoCo: width=height={self.image_size}; KukaReach: image_size)"
            )
        image = np.ascontiguousarray(frame)  # MuJoCo's frames are flipped views with negative strides
        if not (self.proprio or self.sim_state):
            return image
        obs: dict[str, Any] = {IMAGE_KEY: image}
        if self.proprio:
            obs[STATE_KEY] = state if self._dims is None else np.asarray(state)[self._dims]
        if self.sim_state:
            obs[SIM_STATE_KEY] = state
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        state, info = self.env.reset(seed=seed, options=options)
        return self._observe(state), info

    def step(self, action: Any) -> StepResult:
        state, reward, terminated, truncated, info = self.env.step(action)
        return self._observe(state), reward, terminated, truncated, info


def _free_gl_objects(viewer: Any) -> None:
    """Free a MuJoCo viewer's GL objects (textures, buffers) in its own OpenGL context."""
    viewer.make_context_current()
    viewer.con.free()


class ImageNoise(ObservationEffect):
    """Camera sensor noise: frame + N(0, std) per pixel and channel, rounded and clipped to [0, 255].

    `std` is in 0-255 pixel units: a number (fixed) or a `[low, high]` pair drawn once per episode, like
    the other effects; the episode's value goes into `info["effects"]["image_noise.std"]`.
    Per-pixel noise is drawn every step from the env's `np_random`. Works on image Boxes and on the
    "image" entry of a Dict observation.
    """

    name = "image_noise"
    params: ClassVar = {"std": NON_NEGATIVE}
    std: Param

    def __init__(self, env: gym.Env[Any, Any], std: ScalarLike) -> None:
        super().__init__(env, std=std)
        self._shape = _image_box(env.observation_space, "ImageNoise").shape
        self._noise: NoiseStream | None = None

    def start_episode(self, rng: np.random.Generator) -> None:
        std = self.now["std"]
        self._noise = NoiseStream(rng, std, self._shape, np.dtype(np.float32)) if std > 0 else None

    def observation(self, obs: Any) -> Any:
        if self._noise is None:
            return obs
        image = obs[IMAGE_KEY] if isinstance(obs, dict) else obs
        noisy = self._noise.next()
        noisy += image
        np.rint(noisy, out=noisy)
        np.clip(noisy, 0, 255, out=noisy)
        return _with_image(obs, noisy.astype(np.uint8))


class StackFrames(gym.Wrapper[Any, Any, Any, Any], gym.utils.RecordConstructorArgs):
    """Stack the last `n` frames along the channel axis: (H, W, C) -> (H, W, C * n), oldest first.

    The newest frame is in the last C channels. At reset all `n` slots hold the reset frame. With a Dict
    observation only "image" is stacked; the other entries are the current ones.
    """

    def __init__(self, env: gym.Env[Any, Any], n: int) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, n=n)
        gym.Wrapper.__init__(self, env)
        if n < 1:
            raise ValueError(f"StackFrames: n must be >= 1, got {n}")
        box = _image_box(env.observation_space, "StackFrames")
        self.n = int(n)
        self._channels = box.shape[-1]
        stacked = spaces.Box(
            np.concatenate([box.low] * n, -1), np.concatenate([box.high] * n, -1), dtype=np.uint8
        )
        if isinstance(env.observation_space, spaces.Dict):
            self.observation_space = spaces.Dict({**env.observation_space.spaces, IMAGE_KEY: stacked})
        else:
            self.observation_space = stacked
        self._stack = np.zeros(stacked.shape, dtype=np.uint8)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        image = obs[IMAGE_KEY] if isinstance(obs, dict) else obs
        self._stack[:] = np.concatenate([image] * self.n, axis=-1)
        return _with_image(obs, self._stack.copy()), info

    def step(self, action: Any) -> StepResult:
        obs, reward, terminated, truncated, info = self.env.step(action)
        image = obs[IMAGE_KEY] if isinstance(obs, dict) else obs
        c = self._channels
        self._stack[..., :-c] = self._stack[..., c:]
        self._stack[..., -c:] = image
        return _with_image(obs, self._stack.copy()), reward, terminated, truncated, info
