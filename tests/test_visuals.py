"""Visual randomization: varies and restores, seeded, in range, targets as declared, errors name the key path.

Both back-ends: InvertedPendulum (MuJoCo: geom colors, headlight, free camera) and KukaReach (PyBullet:
link/floor/target colors, light intensity and direction, camera). A small MuJoCo model covers what the
Gymnasium tasks lack: a material-colored geom, a model light and a fixed camera.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.envs.mujoco.mujoco_rendering import MujocoRenderer
from numpy.typing import NDArray

from simreal.schema import ConfigError, parse
from simreal.simulation.pixels import PixelObservation
from simreal.simulation.registry import PACKAGED
from simreal.simulation.tasks import TaskSpec, load_task
from simreal.simulation.visuals import (
    MujocoVisuals,
    RandomizeVisuals,
    VisualParamSpec,
    VisualRandomizationSpec,
    visuals_of,
)

TASKS = ["inverted_pendulum", "kuka_reach"]
# What each back-end can vary, with a fixed change that must show in the frame.
CHANGES = {
    "inverted_pendulum": [
        {"param": "rgba", "names": ["cpole"], "value": 0.4},
        {"param": "light_diffuse", "value": 2.0},
        {"param": "camera_pos", "names": ["x"], "value": 0.1, "mode": "add"},
    ],
    "kuka_reach": [
        {"param": "rgba", "names": ["floor"], "value": 0.5},
        {"param": "light_diffuse", "value": 2.0},
        {"param": "light_dir", "names": ["light.x"], "value": 0.6, "mode": "add"},
        {"param": "camera_pos", "names": ["x"], "value": 0.1, "mode": "add"},
    ],
}
CHANGE_CASES = [(key, change) for key in TASKS for change in CHANGES[key]]


def source_spec(key: str) -> VisualRandomizationSpec:
    pixels = load_task(key).pixels
    assert pixels is not None
    return pixels.randomization


def make(key: str, spec: VisualRandomizationSpec | None = None) -> gym.Env[Any, Any]:
    """Nominal env -> RandomizeVisuals(spec) (none if None) -> PixelObservation, camera as in the YAML."""
    task, pixels = PACKAGED[key], load_task(key).pixels
    assert pixels is not None
    size = {name: pixels.image_size for name in pixels.image_size_kwargs}
    env = gym.make(task.nominal_id, render_mode="rgb_array", **size, **pixels.env_kwargs)
    if spec is not None:
        env = RandomizeVisuals(env, spec, where="test.params")
    return PixelObservation(env, image_size=pixels.image_size)


def randomizer(env: gym.Env[Any, Any]) -> RandomizeVisuals:
    while not isinstance(env, RandomizeVisuals):
        assert isinstance(env, gym.Wrapper), "no RandomizeVisuals in the stack"
        env = env.env
    return env


def fixed(**item: Any) -> VisualRandomizationSpec:
    return VisualRandomizationSpec(params=(VisualParamSpec(**item),))


def diff(a: NDArray[Any], b: NDArray[Any]) -> float:
    """Mean absolute pixel difference (0-255 units)."""
    return float(np.abs(a.astype(np.int64) - b.astype(np.int64)).mean())


def changed_pixels(a: NDArray[Any], b: NDArray[Any]) -> int:
    return int((a != b).any(axis=-1).sum())


# ---------------------------------------------------------------- varies, restores, seeded, in range
@pytest.mark.parametrize("key", TASKS)
def test_randomization_changes_the_image_every_episode(key: str) -> None:
    env, nominal = make(key, source_spec(key)), make(key)
    frames, values = [], []
    for seed in (0, 1, 2):
        obs, info = env.reset(seed=seed)
        frames.append(obs)
        values.append(info["visuals"])
        assert diff(obs, nominal.reset(seed=seed)[0]) > 1.0
    assert values[0] != values[1] != values[2]
    assert diff(frames[0], frames[1]) > 1.0 and diff(frames[1], frames[2]) > 1.0
    env.close()
    nominal.close()


@pytest.mark.parametrize("key", TASKS)
def test_disabling_restores_nominal_values_and_image_exactly(key: str) -> None:
    env, fresh = make(key, source_spec(key)), make(key)
    rand = randomizer(env)
    visuals = visuals_of(env)
    for seed in (0, 1):
        env.reset(seed=seed)
    rand.set_enabled(False)
    for name, nominal in rand.nominal.items():
        np.testing.assert_array_equal(visuals.get_visual_param(name), nominal, err_msg=name)
        np.testing.assert_array_equal(visuals_of(fresh).get_visual_param(name), nominal, err_msg=name)
    obs, info = env.reset(seed=5)
    assert info["visuals"] == {}
    np.testing.assert_array_equal(obs, fresh.reset(seed=5)[0])
    env.close()
    fresh.close()


@pytest.mark.parametrize("key", TASKS)
def test_same_seed_same_images_different_seeds_differ(key: str) -> None:
    a, b = make(key, source_spec(key)), make(key, source_spec(key))
    obs_a, info_a = a.reset(seed=3)
    obs_b, info_b = b.reset(seed=3)
    np.testing.assert_array_equal(obs_a, obs_b)
    assert info_a["visuals"] == info_b["visuals"]
    obs_c, info_c = b.reset(seed=4)
    assert info_c["visuals"] != info_a["visuals"] and diff(obs_c, obs_a) > 1.0
    a.close()
    b.close()


@pytest.mark.parametrize("key", TASKS)
def test_sampled_values_stay_in_declared_ranges(key: str) -> None:
    spec = source_spec(key)
    env = make(key, spec)
    rand = randomizer(env)
    visuals = visuals_of(env)
    for seed in range(8):
        drawn = env.reset(seed=seed)[1]["visuals"]
        assert len(drawn) == len(set(drawn))
        for p in spec.params:
            elements = visuals.visual_element_names(p.param)
            low, high = p.support()
            for label, value in drawn.items():
                param, element = label.split("/")
                if param != p.param or (p.names is not None and element.rpartition(".")[0] not in p.names):
                    continue
                nominal = rand.nominal[param][elements.index(element)]
                lo, hi = {"scale": (nominal * low, nominal * high), "add": (nominal + low, nominal + high)}[
                    p.mode
                ]
                if param == "rgba":
                    lo, hi = max(lo, 0.0), min(hi, 1.0)
                assert lo - 1e-12 <= value <= hi + 1e-12, (label, value, lo, hi)
    env.close()


@pytest.mark.parametrize(("key", "change"), CHANGE_CASES, ids=[f"{k}-{c['param']}" for k, c in CHANGE_CASES])
def test_each_parameter_moves_the_rendered_image(key: str, change: dict[str, Any]) -> None:
    env, nominal = make(key, fixed(**change)), make(key)
    obs, info = env.reset(seed=0)
    assert info["visuals"] and changed_pixels(obs, nominal.reset(seed=0)[0]) > 30, change
    env.close()
    nominal.close()


# ---------------------------------------------------------------- targets
TARGET_CASES = [  # a target on another env (another renderer) is a visual shift of its own
    (key, target) for key in TASKS for target, spec in PACKAGED[key].spec.targets.items() if spec.env is None
]


@pytest.mark.parametrize(("key", "target"), TARGET_CASES)
def test_target_visual_shift_is_applied_as_declared(key: str, target: str) -> None:
    task, spec = PACKAGED[key], load_task(key).targets[target]
    assert spec.visuals, f"{key}/{target}: a pixel target must shift the look"
    env = gym.make(task.pixel_target_id(target))
    env.reset(seed=0)
    rand = randomizer(env)
    visuals = visuals_of(env)
    expected = {name: nominal.copy() for name, nominal in rand.nominal.items()}
    for p in spec.visuals:
        elements = visuals.visual_element_names(p.param)
        names = p.names or elements
        idx = [i for i, e in enumerate(elements) if e in names or e.rpartition(".")[0] in names]
        assert p.value is not None
        before = rand.nominal[p.param][idx]
        after = {"scale": before * p.value, "abs": np.full_like(before, p.value), "add": before + p.value}[
            p.mode
        ]
        expected[p.param][idx] = np.clip(after, 0, 1) if p.param == "rgba" else after
    for name, values in expected.items():
        np.testing.assert_allclose(visuals.get_visual_param(name), values, err_msg=f"{key}/{target}: {name}")
        assert not np.array_equal(values, rand.nominal[name]), f"{key}/{target}: {name} equals nominal"
    first = rand.current
    env.reset(seed=1)  # fixed shift: the same values every episode
    assert rand.current == first
    env.close()


# ---------------------------------------------------------------- MuJoCo details the tasks lack
XML = """<mujoco>
  <asset><material name="red" rgba="1 0 0 1"/></asset>
  <worldbody>
    <light name="sun" pos="0 0 2" dir="0 0 -1" directional="true"/>
    <camera name="cam" pos="0 -1.5 0.3" xyaxes="1 0 0 0 0.2 1"/>
    <geom name="box" type="box" size="0.3 0.3 0.3" material="red"/>
    <geom name="floor" type="plane" size="2 2 0.1" pos="0 0 -0.3" rgba="0.3 0.6 0.3 1"/>
  </worldbody>
</mujoco>"""


@pytest.fixture
def scene() -> Iterator[SimpleNamespace]:
    """A minimal stand-in for a Gymnasium MujocoEnv (model, data, renderer) with a fixed camera."""
    model = mujoco.MjModel.from_xml_string(XML)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    renderer = MujocoRenderer(model, data, None, 48, 48, camera_id=0)
    env = SimpleNamespace(model=model, data=data, mujoco_renderer=renderer, render_mode="rgb_array")
    env.frame = lambda: np.array(renderer.render("rgb_array"))
    yield env
    renderer.viewer.make_context_current()  # free GL objects in this context (see PixelObservation.close)
    renderer.viewer.con.free()
    renderer.close()


def test_mujoco_material_light_and_fixed_camera(scene: SimpleNamespace) -> None:
    visuals = MujocoVisuals(scene)
    assert visuals.visual_element_names("light_dir") == ("sun.x", "sun.y", "sun.z")
    assert visuals.visual_element_names("light_diffuse") == ("sun", "headlight")
    nominal_frame = scene.frame()
    nominal = {p: visuals.get_visual_param(p) for p in visuals.visual_param_names()}
    np.testing.assert_allclose(nominal["rgba"][:3], [1, 0, 0])  # the material's color is what is drawn
    raw = scene.model.geom_rgba.copy()
    changes = {
        "rgba": np.concatenate([[0.1, 0.2, 0.9], nominal["rgba"][3:]]),
        "light_diffuse": nominal["light_diffuse"] * [0.3, 1.0],
        "light_dir": nominal["light_dir"] + [0.8, 0.0, 0.0],
        "camera_pos": nominal["camera_pos"] + [0.2, 0.0, 0.0],
    }
    for name, values in changes.items():
        visuals.set_visual_param(name, values)
        np.testing.assert_allclose(visuals.get_visual_param(name), values, err_msg=name)
        assert diff(scene.frame(), nominal_frame) > 0.5, name
        visuals.set_visual_param(name, nominal[name])
        np.testing.assert_array_equal(scene.frame(), nominal_frame, err_msg=name)
    np.testing.assert_array_equal(scene.model.geom_rgba, raw)  # the "use the material" marker is back
    visuals.set_visual_param("rgba", np.concatenate([[0.5, 0.5, 0.5], nominal["rgba"][3:]]))
    assert diff(scene.frame(), nominal_frame) > 0.5  # grey, not the material's red


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("key", "item", "match"),
    [
        (
            "kuka_reach",
            {"param": "rgba", "names": ["nope"], "value": 1.0},
            r"test\.params\.0\.names: \['nope'\] match",
        ),
        (
            "kuka_reach",
            {"param": "camera_pos", "value": 0.1, "mode": "scale"},
            r"test\.params\.0\.mode: 'scale'",
        ),
        (
            "kuka_reach",
            {"param": "light_diffuse", "value": -1.0, "mode": "add"},
            r"test\.params\.0: light_diffuse",
        ),
        (
            "inverted_pendulum",
            {"param": "light_dir", "value": 0.1, "mode": "add"},
            r"test\.params\.0\.names: light_dir",
        ),
        (
            "inverted_pendulum",
            {"param": "rgba", "names": ["cpole.a"], "value": 1.0},
            r"allowed: rail, cart, cpole",
        ),
    ],
)
def test_bad_selectors_and_ranges_are_config_errors_at_construction(
    key: str, item: dict[str, Any], match: str
) -> None:
    env = gym.make(PACKAGED[key].nominal_id)
    with pytest.raises(ConfigError, match=match) as err:
        RandomizeVisuals(env, fixed(**item), where="test.params")
    assert "\n" not in str(err.value)
    env.close()


BASE = {"name": "T", "env": "InvertedPendulum-v5"}


def source(**item: Any) -> dict[str, Any]:
    """Task YAML data with one source visual randomization item."""
    return {**BASE, "pixels": {"randomization": {"params": [item]}}}


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (source(param="texture", value=1.0), "pixels.randomization.params.0.param"),
        (source(param="rgba", dist="uniform", low=2, high=1), "params.0.low: 2.0 > high 1.0"),
        (source(param="rgba", dist="uniform", low=0.5), "params.0.high: required"),
        (
            {**BASE, "targets": {"t": {"visuals": [{"param": "rgba", "value": 0.5}]}}},
            "targets.t.visuals: needs a `pixels:`",
        ),
        ({**BASE, "targets": {"t": {"image_noise_std": -2}}}, "targets.t.image_noise_std"),
    ],
)
def test_bad_visual_yaml_is_a_one_line_config_error_with_the_key_path(
    data: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        parse(TaskSpec, data, "task.yaml")
    assert str(err.value).startswith("task.yaml: ") and "\n" not in str(err.value)


def test_free_camera_without_a_lookat_is_rejected() -> None:
    env = gym.make("simreal/InvertedPendulum-v0", render_mode="rgb_array", width=64, height=64)
    with pytest.raises(ConfigError, match=r"test\.params\.0: camera_pos: .*default_camera_config"):
        RandomizeVisuals(env, fixed(param="camera_pos", value=0.1, mode="add"), where="test.params")
    env.close()
