"""End to end through the CLI with tiny budgets: run, report, evaluate, errors, kill-and-resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tiny import TINY, set_args

from simreal.cli import main

TINY_OVERRIDES = [x for x in TINY if not x.startswith("reference.")]
SMALL = [  # on top of tiny.TINY: two evaluations and a checkpoint every rollout
    "pretrain.timesteps=256",
    "finetune.timesteps=256",
    "evaluation.every_steps=128",
    "evaluation.episodes=2",
    "evaluation.final_episodes=2",
    "algo.kwargs.n_epochs=2",
    "checkpoint_every_steps=64",
]


def _args(out: Path, extra: list[str] | None = None) -> list[str]:
    return set_args(out, *SMALL, *(extra or []))


def _steps(run: Path, variant: str, tag: str = "target/mean_return") -> list[int]:
    acc = EventAccumulator(str(run / variant / "seed0"))
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)]


def test_run_end_to_end(tmp_path: Path) -> None:
    assert main(["run", *_args(tmp_path), "--seeds", "0,1"]) == 0
    run = tmp_path / "quickstart"
    report = json.loads((run / "report.json").read_text())
    variants = {"finetune", "scratch", "zeroshot_randomized", "zeroshot_nominal", "reference"}
    assert set(report["variants"]) == variants
    assert report["variants"]["finetune"]["final_return"]["n"] == 2
    assert report["variants"]["finetune"]["jumpstart"] is not None
    assert (run / "report.md").read_text().startswith("# Transfer report")
    assert (run / "curves.png").stat().st_size > 1000 and (run / "config.yaml").exists()
    assert (
        _steps(run, "finetune") == [0, 128, 256] == _steps(run, "scratch") == _steps(run, "zeroshot_nominal")
    )
    assert report["reference"]["sources"] and report["reference"]["timesteps"] == 256
    shared = Path(report["reference"]["sources"][0])
    assert shared.parent == tmp_path / "references" and (shared / "reference.json").exists()
    assert _steps(shared.parent, shared.name) == [0, 256]  # its own TensorBoard run (every 4x 128), shared
    for seed in (0, 1):  # the same weights on the same episodes: fine-tune's step 0 is the zero-shot value
        ft = json.loads((run / f"finetune/seed{seed}/curve.json").read_text())
        zs = json.loads((run / f"zeroshot_randomized/seed{seed}/curve.json").read_text())
        assert ft[0]["mean_return"] == zs[0]["mean_return"] and [p["step"] for p in ft] == [
            p["step"] for p in zs
        ]
    tags = EventAccumulator(str(run / "finetune" / "seed0"))
    tags.Reload()
    assert "target/mean_return" in tags.Tags()["scalars"] and "eval/mean_reward" not in tags.Tags()["scalars"]
    hparams = EventAccumulator(str(run / "finetune" / "seed0" / "hparams"))
    hparams.Reload()
    assert "hparams/final_return" in hparams.Tags()["scalars"]
    acc = EventAccumulator(str(run / "pretrain_randomized" / "seed0"))
    acc.Reload()
    assert any(t.startswith("dynamics/body_mass") for t in acc.Tags()["histograms"])
    assert "rollout/ep_rew_mean" in acc.Tags()["scalars"] and "time/fps" in acc.Tags()["scalars"]
    # an existing run is not overwritten without --resume
    assert main(["run", *_args(tmp_path)]) == 2
    out = tmp_path / "eval.json"
    assert (
        main(
            [
                "evaluate",
                str(run / "finetune/seed0/policy.pt"),
                "--env",
                "simreal/InvertedPendulum-Target-Latency-v0",
                "--episodes",
                "2",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    assert len(json.loads(out.read_text())["returns"]) == 2


def test_freeze_layers_keeps_first_layer_bit_identical(tmp_path: Path) -> None:
    assert (
        main(
            [
                "run",
                *_args(
                    tmp_path, ["finetune.freeze_layers=1", "pretrain.nominal_baseline=false", "scratch=false"]
                ),
                "--seeds",
                "0",
            ]
        )
        == 0
    )
    run = tmp_path / "quickstart"
    src = torch.load(run / "pretrain_randomized/seed0/policy.pt", weights_only=True)["states"]["policy"]
    ft = torch.load(run / "finetune/seed0/policy.pt", weights_only=True)["states"]["policy"]
    for name in ("mlp_extractor.policy_net.0.weight", "mlp_extractor.value_net.0.bias"):
        assert torch.equal(src[name], ft[name]), name
    assert not torch.equal(src["action_net.weight"], ft["action_net.weight"])


def test_bad_config_fails_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", *_args(tmp_path, ["finetune.freeze=true"])]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "finetune.freeze: unknown key" in err
    assert not (tmp_path / "quickstart").exists()


def test_unwritable_output_and_corrupt_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if os.geteuid() == 0:
        blocker = tmp_path / "file"
        blocker.write_text("not a directory")
        out = blocker
    else:
        out = tmp_path / "ro"
        out.mkdir(mode=0o500)
    assert main(["run", *_args(out)]) == 2
    assert "quickstart" in capsys.readouterr().err
    assert main(["run", *_args(tmp_path), "--seeds", "0"]) == 0
    run = tmp_path / "quickstart"
    ckpt = run / "pretrain_randomized/seed0/checkpoint.pt"
    ckpt.write_bytes(b"garbage")
    (run / "pretrain_randomized/seed0/policy.pt").unlink()
    report_before = (run / "report.json").read_bytes()
    assert main(["run", "--no-progress", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "checkpoint.pt: corrupt or not a simreal file" in err
    assert (run / "report.json").read_bytes() == report_before


def _logged_twice(root: Path) -> list[str]:
    """Every (TensorBoard run, tag, step) logged more than once under `root`, reading the event files
    raw (as any script would; TensorBoard's own purge marker hides duplicates only from its UI)."""
    from collections import Counter

    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event

    seen: Counter[tuple[str, str, int]] = Counter()
    for path in root.rglob("events.out.tfevents.*"):
        for record in RawEventFileLoader(str(path)).Load():
            event = Event.FromString(record)
            for value in event.summary.value:
                seen[str(path.parent.relative_to(root)), value.tag, event.step] += 1
    return [f"{run} {tag} @{step} x{n}" for (run, tag, step), n in sorted(seen.items()) if n > 1]


def _kill_when(cmd: list[str], ready: Callable[[], bool], what: str) -> None:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be killed {what}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _checkpoint_at(path: Path, steps: int) -> bool:
    try:
        return path.exists() and torch.load(path, weights_only=True)["num_timesteps"] >= steps
    except (RuntimeError, EOFError, OSError):  # being written
        return False


def test_kill_and_resume_logs_every_step_once(tmp_path: Path) -> None:
    """SIGKILL before a stage's first checkpoint, mid-stage and inside the shared reference cache; after
    each, `--resume`. The run then completes, no stage runs twice, and every step is logged once."""
    extra = [
        "pretrain.timesteps=4096",
        "finetune.timesteps=2048",
        "evaluation.every_steps=256",
        "checkpoint_every_steps=1024",
        "pretrain.nominal_baseline=false",
        "reference.timesteps=2048",
        "workers=1",
    ]
    first = [sys.executable, "-m", "simreal.cli", "run", *_args(tmp_path, extra), "--seeds", "0"]
    run = tmp_path / "quickstart"
    resume = [sys.executable, "-m", "simreal.cli", "run", "--no-progress", "--resume", str(run)]
    pretrain = run / "pretrain_randomized/seed0"

    def logged_before_checkpoint() -> bool:  # a few rollouts' values in TensorBoard, no checkpoint yet
        files = list(pretrain.glob("events.out.tfevents.*"))
        return bool(files) and files[0].stat().st_size > 2000 and not (pretrain / "checkpoint.pt").exists()

    _kill_when(first, logged_before_checkpoint, "before pretraining's first checkpoint")
    _kill_when(resume, lambda: _checkpoint_at(run / "finetune/seed0/checkpoint.pt", 512), "mid fine-tuning")
    references = tmp_path / "references"
    _kill_when(
        resume,
        lambda: any(_checkpoint_at(p, 1024) for p in references.glob("*/seed0/checkpoint.pt")),
        "inside the shared reference stage",
    )
    assert not (run / "report.json").exists()
    resumed = subprocess.run(resume, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    steps = _steps(run, "finetune")
    assert steps == list(range(0, 2049, 256)), steps
    curve = json.loads((run / "finetune/seed0/curve.json").read_text())
    assert [c["step"] for c in curve] == steps
    report = json.loads((run / "report.json").read_text())
    assert set(report["variants"]) == {"finetune", "scratch", "zeroshot_randomized", "reference"}
    assert _logged_twice(run) == [] and _logged_twice(references) == []
    # the last attempt ran only what was left: the finished stages were not trained again
    assert "pretrain pretrain_randomized" not in resumed.stderr and "finetune seed 0" not in resumed.stderr


def test_same_seed_reproduces_results(tmp_path: Path) -> None:
    extra = ["pretrain.nominal_baseline=false", "scratch=false", "workers=1"]
    for name in ("a", "b"):
        assert main(["run", *_args(tmp_path / name, extra), "--seeds", "3"]) == 0
    stage = "quickstart/finetune/seed3"
    final = [json.loads((tmp_path / n / stage / "final.json").read_text()) for n in ("a", "b")]
    assert final[0]["returns"] == final[1]["returns"]
    curves = [json.loads((tmp_path / n / stage / "curve.json").read_text()) for n in ("a", "b")]
    assert curves[0] == curves[1]


def test_diagnose_env_options_are_checked_like_evaluates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = "simreal/InvertedPendulum-Target-Latency-v0"
    for extra, expected in (
        (["--target", target, "--env-kwargs", "[1]"], "--env-kwargs: expected a JSON object"),
        (["--target", "NoSuchEnv-v0"], "--target NoSuchEnv-v0: not a registered env id"),
    ):
        assert main(["diagnose", str(tmp_path / "policy.pt"), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and expected in err


def test_resume_refuses_settings_that_would_change_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "quickstart"
    run.mkdir()
    (run / "config.yaml").write_text("experiment: quickstart\n")
    for extra in (["--set", "finetune.lr_factor=0.5"], ["--seeds", "0,1"]):
        assert main(["run", "--resume", str(run), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "would change the saved experiment" in err
    assert (run / "config.yaml").read_text() == "experiment: quickstart\n"


def test_python_entry_point_runs_an_experiment_and_returns_its_report(tmp_path: Path) -> None:
    import simreal

    overrides = [*TINY_OVERRIDES, f"output_dir={tmp_path}", "seeds=[0]", "reference=false", "device=cpu"]
    doc = simreal.run(overrides=overrides)
    assert doc["schema"] == "simreal-results-v1" and doc["variants"]["finetune"]["final_return"]["n"] == 1
    assert json.loads((tmp_path / "quickstart/report.json").read_text()) == doc
    again = simreal.run(resume=tmp_path / "quickstart", overrides=["workers=1"])  # nothing left to run
    assert again["variants"] == doc["variants"]


def test_commands_that_build_no_pybullet_env_do_not_load_it() -> None:
    """PyBullet prints a build banner when it loads: only a PyBullet task may load it."""
    code = "import simreal.cli, gymnasium as gym; gym.make('simreal/InvertedPendulum-Target-Latency-v0')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "pybullet" not in out.stdout + out.stderr
