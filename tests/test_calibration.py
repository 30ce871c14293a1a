"""`simreal calibrate`: recovered physics and delays, honest identifiability, counted target steps, the
calibrated task file, log files, and one-line bad input."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml
from tiny import robot_task, set_args
from user_envs import CountingRobot

from simreal.cli import main
from simreal.simulation.calibration import calibrate
from simreal.simulation.calibration.model import Sim, calibration_axes
from simreal.simulation.calibration.noise import fit_noise
from simreal.simulation.calibration.recording import Episode, Recording
from simreal.simulation.calibration.replay import Replay
from simreal.simulation.calibration.task import calibrated_task
from simreal.simulation.registry import register_task
from simreal.simulation.tasks import load_task

PENDULUM = {
    # InvertedPendulum without joint damping: scaling every mass and the motor together leaves the motion
    # unchanged (gravity scales with the mass), so only their ratio can be identified; gravity can.
    "name": "CalibratedPendulum",
    "env": "InvertedPendulum-v5",
    "max_episode_steps": 60,
    "state_from_obs": "envs.states:inverted_pendulum",
    "randomization": {
        "params": [
            {"param": "body_mass", "dist": "log_uniform", "low": 0.5, "high": 2.0},
            {"param": "actuator_gain", "dist": "log_uniform", "low": 0.5, "high": 2.0},
            {"param": "gravity", "names": ["z"], "dist": "uniform", "low": -2.0, "high": 2.0, "mode": "add"},
            {"param": "joint_damping", "dist": "fixed", "value": 0.0, "mode": "abs"},
        ]
    },
    "source_effects": [{"type": "action_delay", "steps": [0, 3]}],
    "targets": {
        "hidden": {
            "physics": [
                {"param": "body_mass", "value": 1.5},
                {"param": "actuator_gain", "value": 0.9},
                {"param": "gravity", "names": ["z"], "value": 1.0, "mode": "add"},
                {"param": "joint_damping", "value": 0.0, "mode": "abs"},
            ],
            "effects": [{"type": "action_delay", "steps": 2}],
        }
    },
}


def _balance(env_id: str, episodes: int) -> Recording:
    """A hand-written balancing controller with random pushes, recorded on `env_id`."""
    env = gym.make(env_id)
    rng = np.random.default_rng(0)
    out = []
    for k in range(episodes):
        obs, _ = env.reset(seed=k)
        seen, sent, done = [obs], [], False
        while not done:
            push = 0.3 * rng.standard_normal()
            action = np.array([np.clip(2.0 * obs[1] + 0.3 * obs[3] + 0.1 * obs[0] + push, -3, 3)], np.float32)
            obs, _, terminated, truncated, _ = env.step(action)
            seen.append(obs)
            sent.append(action)
            done = terminated or truncated
        out.append(Episode(np.array(seen, np.float64), np.array(sent, np.float64)))
    env.close()
    return Recording(tuple(out))


def test_recovers_the_identifiable_physics_and_the_delay_and_names_the_confounded_pair() -> None:
    task = register_task(PENDULUM)
    result = calibrate(task, _balance(task.target_id("hidden"), 10), mode="center", seed=0, segments=64)
    rows = {p["param"]: p for p in result.summary["parameters"]}
    delay = rows["action_delay.steps"]
    assert delay["value"] == 2 and delay["identified"]  # exactly
    gravity = rows["gravity"]
    assert gravity["identified"] and abs(gravity["value"] - 1.0) < 0.1  # true: +1.0 m/s^2
    for name, other in (("body_mass", "actuator_gain"), ("actuator_gain", "body_mass")):
        assert not rows[name]["identified"] and rows[name]["confounded_with"] == [other]
    [group] = result.summary["combinations"]
    [ratio] = group["identified"]
    true = 0.9 / 1.5 if ratio["combination"].startswith("actuator_gain") else 1.5 / 0.9
    assert abs(ratio["value"] / true - 1) < 0.05, ratio  # the ratio the data do fix, within 5%
    assert result.summary["dynamics_gap_after"] < result.summary["dynamics_gap_before"]
    # the calibrated task is a task file whose ranges hold the identified values
    spec = load_task(result.task, where="calibrated")
    assert spec.source_effects[0].args["steps"] == 2  # center: an exact delay becomes fixed
    entry = spec.randomization.params[2]
    assert entry.low <= gravity["value"] <= entry.high and entry.high - entry.low < 1.0
    covered = load_task(calibrated_task(task.spec, result.fits, "cover", "covered"), where="covered")
    entry = covered.randomization.params[2]  # cover: the original range, widened only where needed
    assert entry.low == -2.0 and entry.high == 2.0
    assert covered.source_effects[0].args["steps"] == (0, 3)


def _noisy(name: str, std: float) -> dict[str, object]:
    """`PENDULUM` with a sensor noise range of 0-0.02 and `std` of it on the hidden target."""
    return {
        **PENDULUM,
        "name": name,
        "source_effects": [*PENDULUM["source_effects"], {"type": "observation_noise", "std": [0.0, 0.02]}],
        "targets": {
            "hidden": {
                **PENDULUM["targets"]["hidden"],
                "effects": [
                    {"type": "action_delay", "steps": 2},
                    {"type": "observation_noise", "std": std},
                ],
            }
        },
    }


def test_sensor_noise_well_under_the_first_level_simulated_is_read_right() -> None:
    # noise levels are simulated at 0, 0.01, 0.02, ... (4x the range's top, in 8 steps); the truth, 0.003,
    # lies a third of the way to the first: read in the variance it comes out close (read as a straight
    # line through the std, it came out at 0.0011 - about a third of the truth)
    task = register_task(_noisy("CalibratedPendulumNoise", 0.003))
    sim = Sim(task)
    try:
        replay = Replay(
            sim, _balance(task.target_id("hidden"), 6), calibration_axes(task.spec), 0, segments=64
        )
        true = {"body_mass": 1.5, "actuator_gain": 0.9, "gravity/z": 1.0}  # the dynamics known: noise alone
        u = np.array([a.u(true[a.name]) for a in replay.continuous])
        setting = replay.setting(u, {"action_delay.steps": 2.0})
        noise_axes = [a for a in calibration_axes(task.spec) if a.kind == "noise"]
        [fitted] = fit_noise(replay, setting, noise_axes, seed=0)
    finally:
        sim.close()
    assert fitted.identified and abs(fitted.value / 0.003 - 1) < 0.25, fitted


def test_the_fit_is_the_same_for_any_number_of_workers_and_logs_its_progress(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # with sensor noise: the noise-corrected error (three replays a segment) computed in the workers too
    task = register_task(_noisy("CalibratedPendulumWorkers", 0.01))
    recording = _balance(task.target_id("hidden"), 4)
    caplog.set_level(logging.INFO, logger="simreal")
    one, two = (calibrate(task, recording, seed=0, segments=16, workers=n).summary for n in (1, 2))
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("calibration: ")]
    # per fit: the first short run, the delay's turn, the final search, the jackknife
    assert len(said) == 2 * 4
    assert "action_delay.steps = 2 of 7 values fitted" in said[1] and "noise-corrected" in said[2]
    assert one["noise_corrected_with"] > 0
    assert one["parameters"] == two["parameters"] and one["evaluations"] == two["evaluations"]
    assert one["dynamics_gap_after"] == two["dynamics_gap_after"]


@pytest.fixture(scope="module")
def robot(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A task whose target is an exclusive counting robot, and a (barely) pretrained policy for it."""
    root = tmp_path_factory.mktemp("calibrate")
    task = robot_task(root, "CalibratedRobot")
    config = root / "exp.yaml"
    config.write_text(yaml.safe_dump({"experiment": "robot", "task": str(task), "target": "robot"}))
    args = set_args(
        root / "runs", "pretrain.timesteps=256", "pretrain.nominal_baseline=false", reference=False
    )
    assert main(["pretrain", str(config), *args, "--seeds", "0", "--set", "scratch=false"]) == 0
    return task, root / "runs" / "robot" / "pretrain_randomized" / "seed0" / "policy.pt"


def test_every_step_is_counted_one_instance_at_a_time_and_a_log_gives_the_same_fit(
    robot: tuple[Path, Path], tmp_path: Path
) -> None:
    task, policy = robot
    CountingRobot.forget()
    live = tmp_path / "live"
    args = ["--task", str(task), "--target", "robot", "--episodes", "3", "--excite", "0.3", "--device", "cpu"]
    assert main(["calibrate", str(policy), *args, "--out", str(live)]) == 0
    summary = json.loads((live / "calibration.json").read_text())
    assert summary["target_steps"]["total"] == CountingRobot.steps_taken_total == 3 * 30
    assert summary["target_steps"]["max_open"] == 1 and CountingRobot.connected == 0
    assert CountingRobot.most_connected == 1
    calibrated = load_task(live / "calibrated_task.yaml")
    assert calibrated.name == "CalibratedRobotCalibrated" and "robot" in calibrated.targets
    logged = tmp_path / "logged"
    assert (
        main(
            ["calibrate", "--task", str(task), "--from-log", str(live / "episodes.npz"), "--out", str(logged)]
        )
        == 0
    )
    again = json.loads((logged / "calibration.json").read_text())
    assert again["parameters"] == summary["parameters"]  # the same data, the same fit
    assert again["target_steps"]["total"] == 0
    few = tmp_path / "few"
    log = ["--from-log", str(live / "episodes.npz"), "--segments", "8", "--out", str(few)]
    assert main(["calibrate", "--task", str(task), *log]) == 0
    assert json.loads((few / "calibration.json").read_text())["segments"] == 8 < summary["segments"]


def test_an_exclusive_target_held_elsewhere_is_refused_before_any_step(
    robot: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task, policy = robot
    registered = register_task(task)
    CountingRobot.forget()
    held = gym.make(registered.target_id("robot"))  # a run's target stage, say
    try:
        code = main(
            ["calibrate", str(policy), "--task", str(task), "--target", "robot", "--out", str(tmp_path)]
        )
    finally:
        held.close()
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "exclusive, and an instance is open already" in err and len(err.splitlines()) == 1
    assert CountingRobot.steps_taken_total == 0


def _log(path: Path, obs: np.ndarray, actions: np.ndarray, starts: np.ndarray) -> Path:
    np.savez(path, observations=obs, actions=actions, episode_starts=starts)
    return path


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--params", "user_envs:FRICTION"], "'user_envs:FRICTION' is not a parameter the task randomizes"),
        (["--episodes", "0"], "--episodes: must be >= 1, got 0"),
        (["--excite", "1.5"], "--excite: 1.5 lies beyond the action bounds (allowed: 0 .. 1"),
        (["--workers", "-1"], "--workers: must be >= 0 (0 = one per core), got -1"),
        (["--segments", "4"], "--segments: must be >= 8, got 4"),
        (["--stds", "0"], "--stds: must be > 0, got 0.0"),
    ],
)
def test_bad_input_is_one_line_before_any_target_step(
    robot: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    task, policy = robot
    CountingRobot.forget()
    code = main(
        ["calibrate", str(policy), "--task", str(task), "--target", "robot", "--out", str(tmp_path), *extra]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert CountingRobot.steps_taken_total == 0 and not (tmp_path / "calibration.json").exists()


def test_bad_logs_are_one_line(
    robot: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task, _ = robot
    starts = np.array([True, False, False, True, False])
    cases = [
        (
            _log(tmp_path / "short.npz", np.zeros((5, 2)), np.zeros((4, 1)), starts),
            "the arrays disagree in length",
        ),
        (
            _log(tmp_path / "wide.npz", np.zeros((5, 2)), np.zeros((5, 3)), starts),
            "actions have 3 dimensions",
        ),
    ]
    for path, message in cases:
        assert main(["calibrate", "--task", str(task), "--from-log", str(path), "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


def test_state_from_obs_that_does_not_import_or_returns_the_wrong_shape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = {**PENDULUM, "name": "BrokenImport", "state_from_obs": "user_envs:no_such_function"}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    assert main(["calibrate", "--task", str(path), "--from-log", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert "state_from_obs" in err and len(err.splitlines()) == 1, err
    wrong = {**PENDULUM, "name": "WrongShape", "state_from_obs": "user_envs:wrong_pendulum_state"}
    path.write_text(yaml.safe_dump(wrong))
    log = _log(tmp_path / "ok.npz", np.zeros((4, 4)), np.zeros((4, 1)), np.array([True, False, False, False]))
    assert main(["calibrate", "--task", str(path), "--from-log", str(log), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "returned qpos (3,)" in err and "the env needs (2,)" in err and len(err.splitlines()) == 1, err


def test_without_state_from_obs_whole_episodes_are_replayed_from_reset(tmp_path: Path) -> None:
    spec = yaml.safe_load(robot_task(tmp_path, "NoStateRobot").read_text())
    task = register_task({k: v for k, v in spec.items() if k not in ("state_from_obs", "targets")})
    env = gym.make(task.nominal_id)
    rng = np.random.default_rng(0)
    episodes = []
    for _ in range(4):
        obs, _ = env.reset(seed=0)  # the sim's own reset state: what this mode can match
        seen, sent = [obs], []
        for _ in range(30):
            action = rng.uniform(-1, 1, size=1).astype(np.float32)
            seen.append(env.step(action)[0])
            sent.append(action)
        episodes.append(Episode(np.array(seen, np.float64), np.array(sent, np.float64)))
    env.close()
    result = calibrate(task, Recording(tuple(episodes)), seed=0, segments=16)
    assert result.summary["replay"] == "episodes_from_reset"
    delay = next(p for p in result.summary["parameters"] if p["param"] == "action_delay.steps")
    assert delay["value"] == 0  # the recording has none


def test_a_direction_the_jackknife_reads_as_pinned_but_the_curvature_calls_flat_is_widened() -> None:
    from simreal.simulation.calibration.identify import excess

    vecs = np.array([[1.0, 1.0], [1.0, -1.0]]) / np.sqrt(2)  # eigenvectors of J'J
    local = vecs @ np.diag([0.01, 9.0]) @ vecs.T  # flat along the second: one over a tiny curvature
    jackknife = vecs @ np.diag([0.04, 1e-8]) @ vecs.T  # refits that never moved along it
    combined = jackknife + excess(local, jackknife, vecs)
    along = np.einsum("ik,ij,jk->k", vecs, combined, vecs)
    assert np.allclose(along, [0.04, 9.0])  # the jackknife where it is wider, the local estimate elsewhere


def test_a_polish_spends_at_most_its_budget_and_returns_the_best_point_it_saw() -> None:
    from types import SimpleNamespace

    from simreal.simulation.calibration.fit import _polish

    class Rosenbrock:
        """A curved valley: L-BFGS-B's line searches on it pass `maxfun` unless stopped."""

        def __init__(self) -> None:
            axis = SimpleNamespace(search_bounds=lambda: (-3.0, 3.0))
            self.replay = SimpleNamespace(continuous=[axis, axis])
            self.calls = 0
            self.seen: list[float] = []

        def loss(self, u: np.ndarray, discrete: dict[str, float]) -> float:
            return self.losses([u], discrete)[0]

        def losses(self, us: list[np.ndarray], discrete: dict[str, float]) -> list[float]:
            self.calls += len(us)
            out = [float((1 - u[0]) ** 2 + 100 * (u[1] - u[0] ** 2) ** 2) for u in us]
            self.seen.append(out[0])  # the batch's base point (the rest are its finite differences)
            return out

    for budget in (9, 30, 60):
        counter = Rosenbrock()
        u, value = _polish(counter, np.array([-1.2, 1.0]), {}, budget)  # type: ignore[arg-type]
        assert counter.calls <= budget
        assert value == min(counter.seen)
        assert value == Rosenbrock().loss(u, {})


def test_a_replay_does_not_depend_on_the_one_before_it_with_actuator_activations() -> None:
    """A filtered motor's activation is state the observation does not show: every state set starts it at
    rest, so the same replayed step gives the same observation whatever the sim ran before."""
    from simreal.simulation.calibration.model import Sim

    task = register_task(
        {
            "name": "FilteredSlider",
            "env": "user_envs:FilteredSlider",
            "max_episode_steps": 50,
            "state_from_obs": "user_envs:slider_state",
            "randomization": {
                "params": [{"param": "joint_damping", "dist": "uniform", "low": 0.5, "high": 2.0}]
            },
        }
    )
    sim = Sim(task)
    start, push = np.array([0.1, -0.2]), np.array([0.5])
    seen = []
    for before in (0.0, 1.0, -1.0):  # different histories, each leaving the filter elsewhere
        for _ in range(20):
            sim.step(np.array([before]))
        sim.set_state(start)
        seen.append(sim.step(push))
    sim.close()
    assert sim.raw.model.na == 1
    assert np.array_equal(seen[0], seen[1]) and np.array_equal(seen[0], seen[2])


def test_a_discrete_axis_chosen_under_another_still_at_its_middle_is_chosen_again() -> None:
    from types import SimpleNamespace

    from simreal.simulation.calibration.fit import _discrete_search

    class Coupled:
        """Two whole-numbered axes whose best `a` depends on `b`: at `b`'s middle (1) the best `a` is 5,
        at the true `b` (2) it is 4 - a control rate chosen under the wrong latency."""

        def __init__(self) -> None:
            a = SimpleNamespace(name="a", values=(1.0, 2.0, 3.0, 4.0, 5.0, 6.0))
            b = SimpleNamespace(name="b", values=(0.0, 1.0, 2.0, 3.0))
            self.replay = SimpleNamespace(continuous=[], discrete=[a, b])
            self.calls = 0
            self.said: list[str] = []

        def loss(self, u: np.ndarray, d: dict[str, float]) -> float:
            return self.points([(u, d)])[0]

        def points(self, points: list[tuple[np.ndarray, dict[str, float]]]) -> list[float]:
            self.calls += len(points)
            return [10 * (d["b"] - 2) ** 2 + (d["a"] - (6 - d["b"])) ** 2 for _, d in points]

        def progress(self, done: str) -> None:
            self.said.append(done)

    counter = Coupled()
    start = {"a": 3.0, "b": 1.0}
    _, discrete, fitted = _discrete_search(counter, np.zeros(0), start, counter.loss(np.zeros(0), start), 0)  # type: ignore[arg-type]
    assert discrete == {"a": 4.0, "b": 2.0}  # one turn each would end at a = 5 (fitted under b = 1)
    assert set(fitted["a"]) == {1.0, 2.0, 3.0, 4.0, 5.0, 6.0} and set(fitted["b"]) == {0.0, 1.0, 2.0, 3.0}
    assert counter.said[:2] == ["a = 5 of 6 values fitted", "b = 2 of 4 values fitted"]  # each turn logged
