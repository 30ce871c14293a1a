"""`sim_backend: warp`: N MuJoCo Warp worlds equal Gymnasium's v5 envs, each with its own randomized
physics and effects, and pretraining on them runs through the pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from stable_baselines3.common.vec_env import DummyVecEnv
from tiny import set_args

import simreal  # noqa: F401 - registers the packaged tasks
from simreal.cli import main
from simreal.config import load_config
from simreal.schema import ConfigError
from simreal.simulation.batched import check_batched, make_batched
from simreal.simulation.batched.effects import BatchedEffects
from simreal.simulation.batched.history import VecActionHistory
from simreal.simulation.batched.worlds import WorldPhysics
from simreal.simulation.effects import EffectSpec, apply_effects
from simreal.simulation.observation import ActionHistory
from simreal.simulation.randomization import physics_space
from simreal.simulation.registry import PACKAGED, register_task
from simreal.simulation.sampling import ParamSet, bind
from simreal.training.engine.artifacts import load_policy

pytest.importorskip("mujoco_warp")

CPU = torch.device("cpu")

# Largest difference seen over 300 synchronized steps, float32 Warp vs float64 MuJoCo, times ~10.
TOLERANCE = {"inverted_pendulum": 1e-5, "reacher": 1e-4, "half_cheetah": 5e-3}


@pytest.mark.parametrize("key", list(TOLERANCE))
def test_worlds_equal_gymnasium_from_identical_states_and_actions(key: str) -> None:
    """Each step: both start from the Gymnasium env's state and take the same action; observations,
    rewards and terminations must agree (every world, 300 steps, resets included)."""
    task = PACKAGED[key]
    venv = make_batched(task, False, 3, 0, CPU)
    venv.reset()
    env = gym.make(task.nominal_id).unwrapped
    env.reset(seed=1)
    rng = np.random.default_rng(0)
    terminations = 0
    for t in range(300):
        venv.state.qpos[:] = torch.as_tensor(env.data.qpos)
        venv.state.qvel[:] = torch.as_tensor(env.data.qvel)
        action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
        obs, reward, terminated, _, _ = env.step(action)
        got, rewards, dones, infos = venv.step(np.tile(action, (3, 1)))
        for w in range(3):
            seen = infos[w].get("terminal_observation", got[w])
            np.testing.assert_allclose(seen, obs, atol=TOLERANCE[key], rtol=0)
            assert rewards[w] == pytest.approx(reward, abs=TOLERANCE[key])
            assert bool(dones[w] and not infos[w]["TimeLimit.truncated"]) == terminated
        if terminated:
            terminations += 1
            env.reset(seed=t)
    assert key != "inverted_pendulum" or terminations > 5  # the pendulum's termination was exercised


@pytest.mark.parametrize("key", list(TOLERANCE))
def test_a_reset_world_runs_as_gymnasium_from_its_initial_state(key: str) -> None:
    """A world reset mid-stream and Gymnasium's env set to its new initial state stay together for 20
    free-running steps: nothing of the previous episode (warm start, forces) leaks into the next."""
    task = PACKAGED[key]
    venv = make_batched(task, False, 2, 0, CPU)
    venv.reset()
    for _ in range(3):
        venv.step(np.ones((2, *venv.action_space.shape), dtype=np.float32))
    venv._reset_worlds(np.array([0]))
    env = gym.make(task.nominal_id).unwrapped
    env.reset(seed=0)
    env.set_state(venv.state.qpos[0].double().numpy(), venv.state.qvel[0].double().numpy())
    rng = np.random.default_rng(1)
    for _ in range(20):
        action = rng.uniform(-0.3, 0.3, env.action_space.shape).astype(np.float32)
        obs, _, terminated, _, _ = env.step(action)
        got, _, _, infos = venv.step(np.tile(action, (2, 1)))
        np.testing.assert_allclose(
            infos[0].get("terminal_observation", got[0]), obs, atol=20 * TOLERANCE[key]
        )
        if terminated:
            break


def test_time_limit_truncates_like_gymnasium() -> None:
    """Reacher: 50-step episodes; every world ends at step 50, truncated, with its episode record."""
    venv = make_batched(PACKAGED["reacher"], True, 4, 3, CPU)
    venv.reset()
    zeros = np.zeros((4, 2), dtype=np.float32)
    total = np.zeros(4)
    for step in range(1, 51):
        obs, rewards, dones, infos = venv.step(zeros)
        total += rewards
        assert dones.all() == (step == 50) and dones.any() == (step == 50)
    assert all(i["TimeLimit.truncated"] and i["episode"]["l"] == 50 for i in infos)
    np.testing.assert_allclose([i["episode"]["r"] for i in infos], total, rtol=1e-5)
    assert not np.allclose(obs, np.stack([i["terminal_observation"] for i in infos]))  # reset obs returned


def _ranges(task_key: str) -> dict[str, tuple[float, float]]:
    """`param/element` -> the values the pendulum's YAML allows (nominal x its scale range, or + shift)."""
    env = gym.make(PACKAGED[task_key].nominal_id)
    nominal = env.unwrapped.model  # type: ignore[attr-defined]
    pole, cart = (float(nominal.body(n).mass[0]) for n in ("pole", "cart"))
    env.close()
    return {
        "body_mass/pole": (0.5 * pole, 2.0 * pole),
        "body_mass/cart": (0.7 * cart, 1.3 * cart),
        "gravity/z": (-9.81 - 1.0, -9.81 + 1.0),
    }


def test_each_world_draws_its_own_physics_in_range_reproducibly() -> None:
    task = PACKAGED["inverted_pendulum"]
    a, b, c = (make_batched(task, True, 8, seed, CPU) for seed in (5, 5, 6))
    for venv in (a, b, c):
        venv.reset()
    records = [[venv.reset_infos[w]["dynamics"] for w in range(8)] for venv in (a, b, c)]
    assert records[0] == records[1]  # same seed, same draws
    assert records[0] != records[2]
    poles = [r["body_mass/pole"] for r in records[0]]
    assert len(set(poles)) == 8  # every world its own
    for key, (low, high) in _ranges("inverted_pendulum").items():
        assert all(low - 1e-9 <= r[key] <= high + 1e-9 for r in records[0]), key
    # The batched model holds each world's values (the pole is body 2, the cart body 1).
    mass = a._views["body_mass"].numpy()
    np.testing.assert_allclose(mass[:, 2], poles, rtol=1e-6)
    gravity = a._views["opt.gravity"].numpy()
    np.testing.assert_allclose(gravity[:, 2], [r["gravity/z"] for r in records[0]], rtol=1e-6)
    # ... and the physics differs: same state and action, different next states.
    a.state.qpos[:] = 0.0
    a.state.qvel[:] = 0.0
    obs, *_ = a.step(np.ones((8, 1), dtype=np.float32))
    assert len({round(float(v), 7) for v in obs[:, 2]}) > 1


def test_world_rows_are_what_the_gymnasium_path_writes() -> None:
    """Each world's model rows equal the host model after the Gymnasium path's `set_param` with that
    world's recorded values (inertia and MuJoCo's derived constants included)."""
    task = PACKAGED["half_cheetah"]
    host = gym.make(task.nominal_id)
    physics = WorldPhysics(host, task.spec.randomization, 3, "randomization")
    physics.draw(np.arange(3), np.random.default_rng(40))
    env = gym.make(task.nominal_id)
    space = physics_space(env, task.spec.randomization.params)
    bound = [bind(space, s, f"p.{i}") for i, s in enumerate(task.spec.randomization.params)]
    model = env.unwrapped.model  # type: ignore[attr-defined]
    for w in range(3):
        arrays = {b.spec.param: np.array(space.get(b.spec.param)) for b in bound}
        for b in bound:
            arrays[b.spec.param][b.indices] = [physics.values[w][label] for label in b.labels]
        for name, values in arrays.items():
            space.set(name, values)
        for field, rows in physics.rows.items():
            want = getattr(model.opt, field[4:]) if field.startswith("opt.") else getattr(model, field)
            np.testing.assert_allclose(rows[w], np.atleast_1d(want), rtol=1e-12, err_msg=field)
        for name, values in ParamSet(bound, space).nominal.items():
            space.set(name, values)
    assert physics.values[0] != physics.values[1]


def test_records_have_the_gymnasium_paths_keys() -> None:
    task = PACKAGED["half_cheetah"]
    env = gym.make(task.randomized_id)
    _, info = env.reset(seed=0)
    env.close()
    venv = make_batched(task, True, 2, 0, CPU)
    venv.reset()
    assert set(venv.reset_infos[0]["dynamics"]) == set(info["dynamics"])
    assert set(venv.reset_infos[0]["effects"]) == set(info["effects"])
    _, _, _, infos = venv.step(np.zeros((2, 6), dtype=np.float32))
    assert infos[1]["dynamics"] == venv.reset_infos[1]["dynamics"]


class _Ramp(gym.Env[np.ndarray, np.ndarray]):
    """Observation = step count times ones; the action is echoed back in the observation's info."""

    observation_space = gym.spaces.Box(-100.0, 100.0, (3,), np.float64)
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(3), {}

    def step(self, action: np.ndarray) -> Any:
        self.t += 1
        return np.full(3, float(self.t)), 0.0, False, self.t >= 6, {"applied": np.array(action)}


DETERMINISTIC = [
    [{"type": "action_delay", "steps": 2}],
    [{"type": "actuator_saturation", "limit": 0.5}, {"type": "actuator_dead_zone", "threshold": 0.3}],
    [{"type": "observation_delay", "steps": 3}],
    [{"type": "observation_delay", "steps": 1}, {"type": "action_delay", "steps": 1}],
]


@pytest.mark.parametrize("specs", DETERMINISTIC)
def test_batched_effects_act_as_the_wrappers(specs: list[dict[str, Any]]) -> None:
    """Same actions through the wrapper stack and the batched stack: same actions applied, same
    observations, over an episode and across a reset."""
    parsed = [EffectSpec.model_validate(s) for s in specs]
    env = apply_effects(_Ramp(), parsed)
    batched = BatchedEffects(parsed, 2, _Ramp.action_space, _Ramp.observation_space, "effects")
    rng = np.random.default_rng(0)
    for episode in range(2):
        obs, _ = env.reset(seed=episode)
        batched.start(np.arange(2), rng)
        seen = batched.reset_observation(np.zeros((2, 3)), np.arange(2), rng)
        np.testing.assert_allclose(seen[0], obs)
        for t in range(1, 6):
            action = rng.uniform(-1, 1, 2).astype(np.float32)
            obs, _, _, _, info = env.step(action)
            applied = batched.act(np.tile(action, (2, 1)), rng)
            np.testing.assert_allclose(applied[1], info["applied"], atol=1e-7)
            np.testing.assert_allclose(batched.observe(np.full((2, 3), float(t)), rng)[0], obs)


def test_noise_effects_draw_per_world_values_with_the_right_spread() -> None:
    specs = [EffectSpec.model_validate({"type": "observation_noise", "std": [0.0, 0.2], "bias_std": 0.1})]
    batched = BatchedEffects(specs, 500, _Ramp.action_space, _Ramp.observation_space, "effects")
    rng = np.random.default_rng(1)
    records = batched.start(np.arange(500), rng)
    stds = np.array([r["observation_noise.std"] for r in records])
    assert 0.0 <= stds.min() and stds.max() <= 0.2 and stds.std() > 0.04
    noisy = np.stack([batched.observe(np.zeros((500, 3)), rng) for _ in range(200)])
    per_world = (noisy - noisy.mean(axis=0)).std(axis=(0, 2))
    np.testing.assert_allclose(per_world, stds, atol=0.03)
    assert noisy.mean(axis=0).std() == pytest.approx(0.1, abs=0.02)  # the per-episode bias


def test_action_history_matches_the_per_env_wrapper() -> None:
    def wrapped() -> gym.Env[Any, Any]:
        return ActionHistory(_Ramp(), 2)

    reference = DummyVecEnv([wrapped, wrapped])
    batched = VecActionHistory(DummyVecEnv([_Ramp, _Ramp]), 2)
    assert batched.observation_space == reference.observation_space
    np.testing.assert_allclose(batched.reset(), reference.reset())
    rng = np.random.default_rng(0)
    for _ in range(8):  # past the 6-step time limit: a reset
        actions = rng.uniform(-1, 1, (2, 2)).astype(np.float32)
        want = reference.step(actions)
        got = batched.step(actions)
        np.testing.assert_allclose(got[0], want[0])
        for a, b in zip(got[3], want[3], strict=True):
            if "terminal_observation" in b:
                np.testing.assert_allclose(a["terminal_observation"], b["terminal_observation"])


def _warp_config(tmp_path: Path, **extra: Any) -> Path:
    data = {
        "experiment": "warp",
        "task": "inverted_pendulum",
        "target": "latency",
        "seeds": [0],
        "sim_backend": "warp",
        "observation": {"action_history": 2},
        "algo": {"name": "PPO", "n_envs": 8, "net_arch": [16], "kwargs": {"n_steps": 64, "batch_size": 32}},
        "pretrain": {"timesteps": 256, "algo_kwargs": {"n_steps": 16, "batch_size": 64, "n_epochs": 2}},
        "finetune": {"timesteps": 128},
        **extra,
    }
    path = tmp_path / "warp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_pretraining_on_warp_runs_through_the_pipeline(tmp_path: Path) -> None:
    """A tiny PPO run: pretrained on 8 Warp worlds, fine-tuned and evaluated on the Gymnasium target."""
    config = _warp_config(tmp_path)
    main(["run", str(config), *set_args(tmp_path / "runs", "workers=1", reference=False)])
    run = tmp_path / "runs" / "warp"
    art = load_policy(run / "pretrain_randomized" / "seed0" / "policy.pt", CPU)
    assert art.meta["env_id"] == "simreal/InvertedPendulum-Rand-v0" and art.meta["sim_backend"] == "warp"
    assert art.meta["pretrain_algo_kwargs"]["n_steps"] == 16  # provenance: how it was pretrained
    curve = (run / "pretrain_randomized" / "seed0").glob("**/events.out.tfevents*")
    assert any(curve)
    assert (run / "finetune" / "seed0" / "final.json").exists()
    assert (run / "report.md").exists()


def test_bad_input_is_one_line_before_training(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sim_backend: warp has no batched version of .*KukaReach"):
        check_batched(PACKAGED["kuka_reach"], 8, CPU)
    frame_skip = {
        "name": "WarpFrameSkip",
        "env": "InvertedPendulum-v5",
        "randomization": {
            "params": [{"param": "frame_skip", "dist": "choice", "values": [1, 2], "mode": "abs"}]
        },
        "targets": {"t": {}},
    }
    with pytest.raises(ConfigError, match=r"randomization.params.0.param: frame_skip is not supported"):
        check_batched(register_task(frame_skip), 8, CPU)
    jitter = {
        "name": "WarpJitter",
        "env": "InvertedPendulum-v5",
        "source_effects": [{"type": "control_jitter", "max_extra_steps": 1, "prob": 0.1}],
        "targets": {"t": {}},
    }
    with pytest.raises(ConfigError, match=r"source_effects.0.type: control_jitter has no batched form"):
        check_batched(register_task(jitter), 8, CPU)
    with pytest.raises(ConfigError, match=r"algo.n_envs: 10,000,000,000 worlds need about"):
        check_batched(PACKAGED["inverted_pendulum"], 10_000_000_000, CPU)
    with pytest.raises(ConfigError, match=r"pixels: not supported with sim_backend: warp"):
        load_config(_warp_config(tmp_path, pixels=True, observation={}))
    with pytest.raises(ConfigError, match=r"pretrain.algo_kwargs.n_step: not an argument of PPO"):
        load_config(_warp_config(tmp_path, pretrain={"timesteps": 8, "algo_kwargs": {"n_step": 8}}))


def test_target_stages_use_one_env_with_warp(tmp_path: Path) -> None:
    cfg = load_config(_warp_config(tmp_path))
    assert cfg.algo.n_envs == 8 and cfg.target_n_envs == 1 and cfg.target_rollout == 64
    assert cfg.pretrain_algo.kwargs["n_steps"] == 16 and cfg.algo.kwargs["n_steps"] == 64


def test_warp_pretraining_is_reproducible_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same seed, same weights; a pretraining interrupted after a checkpoint continues from it (its
    TensorBoard steps run on without repeats; the worlds restart from a fresh reset, as on Gymnasium)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import simreal.training.engine.loop as loop

    extra = [
        "workers=1",
        "pretrain.timesteps=384",
        "checkpoint_every_steps=128",
        "pretrain.nominal_baseline=false",
    ]
    config = str(_warp_config(tmp_path))
    args = {name: set_args(tmp_path / name, *extra, reference=False) for name in ("a", "b", "c")}
    for name in ("a", "b"):
        main(["pretrain", config, *args[name]])
    policy = "warp/pretrain_randomized/seed0/policy.pt"
    weights = [load_policy(tmp_path / n / policy, CPU).states["policy"] for n in ("a", "b")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])

    real = loop.save_checkpoint

    def save_then_stop(*a: Any, **k: Any) -> None:
        real(*a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        main(["pretrain", config, *args["c"]])
    monkeypatch.setattr(loop, "save_checkpoint", real)
    stage = tmp_path / "c" / "warp" / "pretrain_randomized" / "seed0"
    assert torch.load(stage / "checkpoint.pt", weights_only=True)["num_timesteps"] == 128
    assert not (stage / "policy.pt").exists()
    main(["pretrain", config, *args["c"]])  # pretrain resumes from its checkpoint
    assert (stage / "policy.pt").exists()
    acc = EventAccumulator(str(stage))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("time/fps")]
    assert steps == sorted(set(steps)) and steps[-1] == 384, steps


def _adr_task(name: str, expand_above: float, shrink_below: float) -> Any:
    return register_task(
        {
            "name": name,
            "env": "InvertedPendulum-v5",
            "randomization": {
                "params": [
                    {"param": "body_mass", "names": ["pole"], "dist": "uniform", "low": 0.5, "high": 2.0}
                ],
                "adr": {
                    "expand_above": expand_above,
                    "shrink_below": shrink_below,
                    "boundary_prob": 0.5,
                    "initial_width": 0.2,
                    "episodes": 3,
                },
            },
            "targets": {"t": {}},
        }
    )


def test_adr_grows_from_the_worlds_episodes_and_pins_edges() -> None:
    """Every world's episode pins an edge with boundary_prob and files its return: with returns always
    above expand_above the range grows towards its declared bounds, never past them; with returns always
    below shrink_below it never shrinks inside its initial range."""
    from simreal.simulation.adr import AdrState

    for name, expand, shrink, grows in (("WarpAdrUp", -1.0, -2.0, True), ("WarpAdrDown", 1e9, 1e9, False)):
        task = _adr_task(name, expand, shrink)
        spec = task.spec.randomization
        assert spec.adr is not None
        adr = AdrState.for_entries(spec.adr, spec.params)
        start = (adr.dims[0].low, adr.dims[0].high)
        venv = make_batched(task, True, 16, 0, CPU, adr=adr)
        venv.reset()
        pinned = [int((venv.physics._pin >= 0).sum())]
        nominal = 2 * _ranges("inverted_pendulum")["body_mass/pole"][0]
        pole = venv._views["body_mass"][:, 2].numpy() / nominal  # the drawn scale factors
        at_edge = np.isclose(pole, adr.dims[0].low) | np.isclose(pole, adr.dims[0].high)
        assert at_edge[venv.physics._pin >= 0].all()  # a pinned world draws the edge itself
        rng = np.random.default_rng(0)
        for _ in range(100):
            venv.step(rng.uniform(-1, 1, (16, 1)).astype(np.float32))
            pinned.append(int((venv.physics._pin >= 0).sum()))
        low, high = adr.dims[0].low, adr.dims[0].high
        assert 0.5 <= low <= high <= 2.0
        if grows:
            assert low < start[0] and high > start[1] and adr.updates > 0
        else:
            assert (low, high) == pytest.approx(start)
        assert 0 < np.mean(pinned) < 16  # about half the worlds' episodes pin an edge


def test_a_users_task_file_pretrains_on_warp(tmp_path: Path) -> None:
    """A task YAML outside the package (its own name, randomization and effects) goes through the same
    path: registered from the file, its worlds randomized from its YAML, the target its own."""
    task = {
        "name": "MyReacher",
        "env": "Reacher-v5",
        "env_kwargs": {"reward_control_weight": 0.5},
        "randomization": {
            "params": [
                {
                    "param": "joint_damping",
                    "names": ["joint0", "joint1"],
                    "dist": "uniform",
                    "low": 0.5,
                    "high": 1.5,
                }
            ]
        },
        "source_effects": [{"type": "action_delay", "steps": [0, 1]}],
        "targets": {"stiff": {"physics": [{"param": "joint_damping", "value": 2.0}]}},
    }
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "my_reacher.yaml").write_text(yaml.safe_dump(task))
    config = _warp_config(tmp_path, task="tasks/my_reacher.yaml", target="stiff", observation={})
    main(["pretrain", str(config), *set_args(tmp_path / "runs", "workers=1", reference=False)])
    art = load_policy(tmp_path / "runs" / "warp" / "pretrain_randomized" / "seed0" / "policy.pt", CPU)
    assert art.meta["env_id"] == "simreal/MyReacher-Rand-v0" and art.meta["sim_backend"] == "warp"
    venv = make_batched(register_task(load_config(config).task), True, 2, 0, CPU)
    venv.reset()
    assert set(venv.reset_infos[0]["dynamics"]) == {"joint_damping/joint0", "joint_damping/joint1"}
    assert venv.task.control_weight == 0.5  # the task's env_kwargs reach the batched arithmetic
