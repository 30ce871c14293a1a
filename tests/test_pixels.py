"""Pixel observations: PixelObservation, StackFrames and ImageNoise on a tiny fake, then on the real tasks.

Registered pixel ids also go through the contract tests in `test_registry.py` (gymnasium's and SB3's
checkers, seeded reproducibility); here: shapes, render counts, stacking order, noise, wrapper order,
several MuJoCo renderers in one process and the Dict (`proprio`) variant.
"""

from __future__ import annotations

import gc
import warnings
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from numpy.typing import NDArray
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from simreal.schema import ConfigError, parse
from simreal.simulation.effects import ActionDelay, ObservationNoise, parse_effects
from simreal.simulation.pixels import ImageNoise, PixelObservation, StackFrames
from simreal.simulation.randomization import RandomizeDynamics
from simreal.simulation.registry import PACKAGED
from simreal.simulation.tasks import PixelSpec, load_task
from simreal.simulation.variants import effects_under_camera
from simreal.simulation.visuals import RandomizeVisuals

PIXEL_TASKS = sorted(key for key, task in PACKAGED.items() if task.spec.pixels is not None)


class FrameEnv(gym.Env[NDArray[np.float32], NDArray[np.float32]]):
    """Renders (size, size, 3) frames filled with `base + t` (t = steps since reset); counts renders."""

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"]}

    def __init__(self, size: int = 8, base: int = 0, render_mode: str | None = "rgb_array") -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
        self.render_mode = render_mode
        self.size, self.base, self.t, self.renders = size, base, 0, 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        return np.full(2, self.t, dtype=np.float32), {}

    def step(self, action: Any) -> tuple[NDArray[np.float32], SupportsFloat, bool, bool, dict[str, Any]]:
        self.t += 1
        return np.full(2, self.t, dtype=np.float32), 0.0, False, self.t >= 50, {}

    def render(self) -> NDArray[np.uint8]:
        self.renders += 1
        return np.full((self.size, self.size, 3), self.base + self.t, dtype=np.uint8)


class CountRenders(gym.Wrapper[Any, Any, Any, Any]):
    """Counts `render` calls passing through it."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        self.renders = 0

    def render(self) -> Any:
        self.renders += 1
        return self.env.render()


def chain(env: gym.Env[Any, Any]) -> list[type]:
    """Wrapper types from the outermost inwards."""
    types = []
    while isinstance(env, gym.Wrapper):
        types.append(type(env))
        env = env.env
    return types


def rendering_env(key: str, size: int = 64) -> gym.Env[Any, Any]:
    """Task `key`'s nominal env rendering `size`-pixel frames with the camera of its YAML."""
    task, pixels = PACKAGED[key], load_task(key).pixels
    assert pixels is not None
    kwargs = {name: size for name in pixels.image_size_kwargs}
    return gym.make(task.nominal_id, render_mode="rgb_array", **kwargs, **pixels.env_kwargs)


# ---------------------------------------------------------------- PixelObservation
def test_pixel_observation_is_the_frame_rendered_once_per_reset_and_step() -> None:
    base = FrameEnv()
    env = PixelObservation(base, image_size=8)
    assert env.observation_space == gym.spaces.Box(0, 255, (8, 8, 3), dtype=np.uint8)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.uint8 and env.observation_space.contains(obs) and (obs == 0).all()
    for t in range(1, 4):
        obs = env.step(np.zeros(1, dtype=np.float32))[0]
        assert (obs == t).all()
    assert base.renders == 4


def test_proprio_observation_is_a_dict_with_the_state() -> None:
    env = PixelObservation(FrameEnv(), image_size=8, proprio=True)
    assert isinstance(env.observation_space, gym.spaces.Dict)
    obs, _ = env.reset(seed=0)
    obs = env.step(np.zeros(1, dtype=np.float32))[0]
    assert env.observation_space.contains(obs)
    assert (obs["image"] == 1).all()
    np.testing.assert_array_equal(obs["state"], [1.0, 1.0])


class _ArmEnv(FrameEnv):
    """A 3-d state [t, 10 t, 100 t]: "joint", "velocity" and the "goal" a camera policy must not read."""

    def __init__(self) -> None:
        super().__init__()
        self.observation_space = gym.spaces.Box(-1e4, 1e4, (3,), dtype=np.float32)

    def reset(self, **kwargs: Any) -> tuple[NDArray[np.float32], dict[str, Any]]:
        super().reset(**kwargs)
        return np.array([0, 0, 0], dtype=np.float32), {}

    def step(self, action: Any) -> tuple[NDArray[np.float32], SupportsFloat, bool, bool, dict[str, Any]]:
        _, reward, terminated, truncated, info = super().step(action)
        return np.array([1, 10, 100], dtype=np.float32) * self.t, reward, terminated, truncated, info


def test_proprio_dims_keep_those_state_dimensions_and_the_teacher_gets_the_whole_state() -> None:
    env = PixelObservation(_ArmEnv(), image_size=8, proprio=True, state_dims=[1, 0], sim_state=True)
    space = env.observation_space
    assert isinstance(space, gym.spaces.Dict) and set(space.spaces) == {"image", "state", "sim_state"}
    assert space["state"].shape == (2,) and space["sim_state"].shape == (3,)
    env.reset(seed=0)
    obs = env.step(np.zeros(1, dtype=np.float32))[0]
    assert space.contains(obs)
    np.testing.assert_array_equal(obs["state"], [10.0, 1.0])  # in the order given, the goal left out
    np.testing.assert_array_equal(obs["sim_state"], [1.0, 10.0, 100.0])
    camera_only = PixelObservation(_ArmEnv(), image_size=8, sim_state=True)  # no state for the policy
    assert set(camera_only.observation_space.spaces) == {"image", "sim_state"}  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"state_dims \[3\] need proprio=True .* \(allowed: 0..2\)"):
        PixelObservation(_ArmEnv(), image_size=8, proprio=True, state_dims=[3])


@pytest.mark.parametrize(
    ("pixels", "match"),
    [
        ({"proprio_dims": [0]}, "proprio_dims: only with proprio: true"),
        ({"proprio": True, "proprio_dims": [0, 0]}, r"proprio_dims: need distinct indices >= 0 .* \[0, 0\]"),
        ({"proprio": True, "proprio_dims": [-1]}, r"proprio_dims: need distinct indices >= 0"),
    ],
)
def test_bad_proprio_dims_are_one_line_errors_naming_the_key(pixels: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        parse(PixelSpec, {"image_size": 8, **pixels}, "task.yaml: pixels")
    assert "\n" not in str(err.value) and "task.yaml: pixels" in str(err.value)


def test_proprio_dims_past_the_state_vector_are_refused_when_the_env_is_built() -> None:
    from simreal.simulation.variants import _observe

    spec = parse(PixelSpec, {"image_size": 8, "proprio": True, "proprio_dims": [0, 3]}, "task.yaml: pixels")
    with pytest.raises(ConfigError, match=r"task.yaml: pixels.proprio_dims: index 3 is past") as err:
        _observe(_ArmEnv(), spec, 0.0, "task.yaml")
    assert "\n" not in str(err.value) and "allowed: 0..2" in str(err.value)


def test_kuka_camera_policy_reads_the_joint_encoders_and_the_teacher_the_target() -> None:
    """The packaged KukaReach pixel ids: the policy's state is the joints (positions and velocities), the
    target only in the image; the labelling env adds the whole state, whose first 14 entries those are."""
    task = PACKAGED["kuka_reach"]
    env = gym.make(task.pixel_randomized_id, teacher_state=True)
    plain = gym.make(task.pixel_randomized_id)
    try:
        assert set(plain.observation_space.spaces) == {"image", "state"}  # type: ignore[attr-defined]
        obs, _ = env.reset(seed=1)
        for _ in range(3):
            obs, *_ = env.step(env.action_space.sample())
        assert obs["state"].shape == (14,) and obs["sim_state"].shape == (23,)
        np.testing.assert_array_equal(obs["state"], obs["sim_state"][:14])
        target = env.unwrapped._target  # type: ignore[attr-defined]
        np.testing.assert_allclose(obs["sim_state"][17:20], target, atol=0.1)  # with the source's noise
    finally:
        env.close()
        plain.close()


def test_pixel_observation_rejects_wrong_size_and_missing_render_mode() -> None:
    with pytest.raises(ValueError, match="render_mode='rgb_array'"):
        PixelObservation(FrameEnv(render_mode=None), image_size=8)
    env = PixelObservation(FrameEnv(size=8), image_size=16)
    with pytest.raises(ValueError, match=r"rendered \(8, 8, 3\), expected uint8 \(16, 16, 3\)"):
        env.reset(seed=0)


# ---------------------------------------------------------------- StackFrames
def test_stack_frames_newest_last_and_reset_fills() -> None:
    env = StackFrames(PixelObservation(FrameEnv(), image_size=8), n=3)
    assert env.observation_space.shape == (8, 8, 9)
    obs, _ = env.reset(seed=0)
    assert (obs == 0).all()
    seen = [obs]
    for t in range(1, 5):
        obs = env.step(np.zeros(1, dtype=np.float32))[0]
        seen.append(obs)
        slots = [int(obs[0, 0, 3 * i]) for i in range(3)]
        assert slots == [max(0, t - 2), max(0, t - 1), t]  # oldest first, the newest frame last
        assert env.observation_space.contains(obs)
    seen[1][...] = 99  # returned arrays are copies: changing one changes no other
    assert int(seen[2][0, 0, 0]) == 0 and int(seen[-1][0, 0, -1]) == 4
    assert (env.reset(seed=1)[0] == 0).all()


def test_stack_frames_stacks_only_the_image_of_a_dict() -> None:
    env = StackFrames(PixelObservation(FrameEnv(), image_size=8, proprio=True), n=2)
    assert isinstance(env.observation_space, gym.spaces.Dict)
    assert env.observation_space["image"].shape == (8, 8, 6)
    env.reset(seed=0)
    obs = env.step(np.zeros(1, dtype=np.float32))[0]
    assert env.observation_space.contains(obs)
    assert [int(obs["image"][0, 0, c]) for c in (0, 3)] == [0, 1]
    np.testing.assert_array_equal(obs["state"], [1.0, 1.0])
    with pytest.raises(ValueError, match="n must be >= 1"):
        StackFrames(PixelObservation(FrameEnv(), image_size=8), n=0)


# ---------------------------------------------------------------- ImageNoise
def test_image_noise_has_the_declared_std_and_stays_uint8() -> None:
    env = ImageNoise(PixelObservation(FrameEnv(size=64, base=128), image_size=64), std=10.0)
    obs, info = env.reset(seed=0)
    assert info["effects"] == {"image_noise.std": 10.0}
    assert obs.dtype == np.uint8 and env.observation_space.contains(obs)
    noise = obs.astype(np.float64) - 128
    assert abs(noise.mean()) < 0.5 and noise.std() == pytest.approx(10.0, rel=0.05)
    obs2 = env.step(np.zeros(1, dtype=np.float32))[0]
    assert not np.array_equal(obs2.astype(int) - 1, obs.astype(int))  # fresh noise every step
    clipped = ImageNoise(PixelObservation(FrameEnv(size=64, base=250), image_size=64), std=50.0)
    assert clipped.reset(seed=0)[0].max() == 255


def test_image_noise_range_is_drawn_per_episode_and_seeded() -> None:
    def make() -> ImageNoise:
        return ImageNoise(PixelObservation(FrameEnv(size=16, base=100), image_size=16), std=[2.0, 6.0])

    env = make()
    stds = {env.reset(seed=s)[1]["effects"]["image_noise.std"] for s in range(5)}
    assert len(stds) == 5 and all(2.0 <= s <= 6.0 for s in stds)
    a, b = make(), make()
    np.testing.assert_array_equal(a.reset(seed=7)[0], b.reset(seed=7)[0])
    zero = ImageNoise(PixelObservation(FrameEnv(size=16, base=100), image_size=16), std=0.0)
    assert (zero.reset(seed=0)[0] == 100).all()
    with pytest.raises(ValueError, match="std must be >= 0"):
        ImageNoise(PixelObservation(FrameEnv(), image_size=8), std=-1.0)


def test_image_noise_touches_only_the_image_of_a_dict() -> None:
    env = ImageNoise(PixelObservation(FrameEnv(size=16, base=100), image_size=16, proprio=True), std=5.0)
    obs, _ = env.reset(seed=0)
    assert not (obs["image"] == 100).all()
    np.testing.assert_array_equal(obs["state"], [0.0, 0.0])


# ---------------------------------------------------------------- real tasks
@pytest.mark.parametrize("key", PIXEL_TASKS)
def test_pixel_ids_give_uint8_frames_of_the_declared_shape(key: str) -> None:
    task, pixels = PACKAGED[key], load_task(key).pixels
    assert pixels is not None
    env = gym.make(task.pixel_nominal_id)
    shape = (pixels.image_size, pixels.image_size, 3 * pixels.frame_stack)
    space = env.observation_space
    image = space["image"] if pixels.proprio else space  # type: ignore[index]
    assert image.shape == shape and image.dtype == np.uint8
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        obs = env.step(env.action_space.sample())[0]
        frame = obs["image"] if pixels.proprio else obs
        assert frame.shape == shape and frame.dtype == np.uint8 and env.observation_space.contains(obs)
    assert frame[..., -3:].std() > 10  # a scene, not a blank frame
    env.close()


@pytest.mark.parametrize("key", PIXEL_TASKS)
def test_real_envs_render_once_per_step(key: str) -> None:
    counter = CountRenders(rendering_env(key))
    env = PixelObservation(counter, image_size=64)
    env.reset(seed=0)
    for _ in range(5):
        env.step(env.action_space.sample())
    assert counter.renders == 6
    env.close()


@pytest.mark.parametrize("key", PIXEL_TASKS)
def test_proprio_stack_passes_gymnasium_and_sb3_checkers(key: str) -> None:
    env = StackFrames(ImageNoise(PixelObservation(rendering_env(key), 64, proprio=True), std=2.0), n=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        gym_check_env(env, skip_render_check=True)
    sb3_check_env(env, warn=False)
    env.close()


def test_mujoco_pixel_envs_in_one_process_render_their_own_frames() -> None:
    task = PACKAGED["inverted_pendulum"]
    a = gym.make(task.pixel_nominal_id)
    first = a.reset(seed=0)[0]
    b = gym.make(task.pixel_target_id("extrapolate"))
    assert not np.array_equal(b.reset(seed=0)[0], first)
    np.testing.assert_array_equal(a.reset(seed=0)[0], first)  # not drawn in b's context
    del b  # dropped unclosed: its GL objects must be freed in its own context, not in a's
    gc.collect()
    np.testing.assert_array_equal(a.reset(seed=0)[0], first)
    c = gym.make(task.pixel_randomized_id)
    c.reset(seed=0)
    c.close()
    np.testing.assert_array_equal(a.reset(seed=0)[0], first)
    a.close()


# ---------------------------------------------------------------- registration and composition
def test_pixel_ids_are_registered_for_tasks_with_a_pixels_section() -> None:
    assert {"inverted_pendulum", "kuka_reach"} <= set(PIXEL_TASKS)
    for key, task in PACKAGED.items():
        assert (task.spec.pixels is not None) == (load_task(key).pixels is not None), key
        ids = [task.pixel_nominal_id, task.pixel_randomized_id, *map(task.pixel_target_id, task.spec.targets)]
        assert all((i in gym.registry) == (task.spec.pixels is not None) for i in ids), key
    assert PACKAGED["kuka_reach"].pixel_target_id("shifted") == "simreal/KukaReach-Pixels-Target-Shifted-v0"


@pytest.mark.parametrize("key", PIXEL_TASKS)
def test_pixel_wrapper_order(key: str) -> None:
    task = PACKAGED[key]
    env = gym.make(task.pixel_randomized_id)
    types = chain(env)
    order = [StackFrames, ImageNoise, PixelObservation, ActionDelay, RandomizeVisuals, RandomizeDynamics]
    positions = [types.index(t) for t in order]
    assert positions == sorted(positions), types
    # Sensor effects on the state vector are not seen through a camera, only on a "state" entry beside it.
    proprio = task.spec.pixels is not None and task.spec.pixels.proprio
    assert (ObservationNoise in types) == proprio
    if proprio:
        assert types.index(PixelObservation) < types.index(ObservationNoise)
    env.close()
    nominal = gym.make(task.pixel_nominal_id)
    assert [t for t in chain(nominal) if t.__module__.startswith("simreal")] == [
        StackFrames,
        PixelObservation,
    ]
    nominal.close()


def test_sensor_effects_are_kept_only_with_proprio() -> None:
    effects = parse_effects(
        [{"type": "action_delay", "steps": 1}, {"type": "observation_noise", "std": 0.1}], "test"
    )
    assert [e.type for e in effects_under_camera(effects, proprio=False)] == ["action_delay"]
    assert [e.type for e in effects_under_camera(effects, proprio=True)] == [
        "action_delay",
        "observation_noise",
    ]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"frame_stack": 0}, "pixels: frame_stack: Input should be greater than or equal to 1"),
        ({"image_noise_std": [4, 1]}, "pixels: image_noise_std: image_noise_std range needs low <= high"),
        ({"image_noise_std": -1}, "pixels: image_noise_std: image_noise_std must be >= 0"),
        ({"image_sise": 64}, "pixels: image_sise: unknown key"),
    ],
)
def test_bad_pixel_settings_are_one_line_config_errors(data: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        parse(PixelSpec, data, "task.yaml: pixels")
    assert "\n" not in str(err.value)


class _StatelessCamera(FrameEnv):
    """A camera-only env: its own observation is already the frame (no state vector)."""

    def __init__(self) -> None:
        super().__init__()
        self.observation_space = gym.spaces.Box(0, 255, (8, 8, 3), dtype=np.uint8)  # type: ignore[assignment]


def test_proprio_on_an_env_without_a_state_vector_is_a_one_line_config_error() -> None:
    from simreal.simulation.variants import _observe

    spec = parse(PixelSpec, {"image_size": 8, "proprio": True}, "task.yaml: pixels")
    with pytest.raises(ConfigError, match=r"task.yaml: pixels.proprio: the env's observation is Box") as err:
        _observe(_StatelessCamera(), spec, 0.0, "task.yaml")
    assert "\n" not in str(err.value) and "allowed: proprio: false" in str(err.value)
    plain = _observe(FrameEnv(), spec, 0.0, "task.yaml")  # a state vector: the Dict is built
    assert set(plain.observation_space.spaces) == {"image", "state"}  # type: ignore[attr-defined]
