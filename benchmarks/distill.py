"""Does a distilled student beat plain domain randomization zero-shot on targets outside the range?

Part 1 (`--tasks`): for each task's extrapolation config, one `simreal run` with a `distill:` block
(privileged teacher with the config's network, student with a history window, distilled in the
randomized sim), scratch off (the reference stage is the yardstick). The report gives, on the same
target with the same evaluation seeds: zero-shot student, zero-shot randomized and zero-shot nominal as
fractions of the reference return, P(student > randomized), and the distillation's cost (sim steps,
wall time). Fine-tuned variants are in the run's report too.

Part 2 (`--small`): a large teacher (256x256) distilled into a small student (32x32) on the pendulum:
the student's return as a fraction of the teacher's (randomized sim and target), and the inference time
per action on one CPU core, PyTorch and the exported ONNX graph, timed side by side in one loop.

Writes between the markers of BENCHMARKS.md. Runs already finished in `--out` are read, not redone.

Usage:
    python benchmarks/distill.py --seeds 0,1,2,3,4                  # part 1 on all three tasks + part 2
    python benchmarks/distill.py --tasks inverted_pendulum --no-small
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sections import write_section

from simreal.cli import main as simreal_main

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- distill:start -->", "<!-- distill:end -->"
SMALL_START, SMALL_END = "<!-- distill-small:start -->", "<!-- distill-small:end -->"
TASKS: dict[str, tuple[str, list[str]]] = {
    # config, overrides: the extrapolation target, and distillation budgets per task
    "inverted_pendulum": ("inverted_pendulum_extrapolate.yaml", ["distill.steps=100000"]),
    "reacher": ("reacher.yaml", ["target=extrapolate", "distill.steps=200000"]),
    "kuka_reach": ("kuka_reach.yaml", ["target=extrapolate", "distill.steps=40000", "distill.n_envs=4"]),
}
SMALL = [
    "distill.teacher.net_arch={pi: [256, 256], vf: [256, 256]}",
    "distill.student.net_arch={pi: [32, 32], vf: [32, 32]}",
    "distill.steps=100000",
]


def _reuse(source: Path, run: Path) -> None:
    """Copy the pretrained stages of an earlier run of the same config and seeds (they are skipped)."""
    for variant in ("pretrain_randomized", "pretrain_nominal"):
        if (source / variant).is_dir() and not (run / variant).exists():
            shutil.copytree(source / variant, run / variant)


def _run(config: Path, out: Path, name: str, seeds: str, overrides: list[str]) -> dict[str, Any]:
    report = out / name / "report.json"
    if not report.exists():
        args = ["run", str(config), "--no-progress", "--seeds", seeds, "--set", f"output_dir={out}"]
        for item in [f"experiment={name}", "scratch=false", *overrides]:
            args += ["--set", item]
        resume = out / name
        if (resume / "config.yaml").exists():
            args = ["run", "--resume", str(resume), "--no-progress"]
        if simreal_main(args) != 0:
            raise SystemExit(f"distill benchmark: {name} failed")
    return json.loads(report.read_text())


def oracle_return(run: Path, seed: int, episodes: int) -> float:
    """The privileged teacher on the (sim) target, told the target's true physics and effect values
    (`Privileged` with the source's layout over the target's own `info`): what a perfect adaptation
    module would give the student. Final evaluation seeds."""
    import gymnasium as gym

    from simreal.config import load_config
    from simreal.simulation.observation import ObservationConfig, observation_wrapper
    from simreal.simulation.privileged import Privileged, PrivilegedView
    from simreal.simulation.registry import ensure
    from simreal.training.engine.artifacts import load_policy
    from simreal.training.engine.evaluation import evaluate
    from simreal.training.engine.sb3.loading import load_for_env

    cfg = load_config(run / "config.yaml")
    task = ensure(cfg.task)
    teacher = run / "pretrain_teacher" / f"seed{seed}" / "policy.pt"
    seen = ObservationConfig.model_validate(load_policy(teacher).meta["observation"])
    wrap = observation_wrapper(seen.model_copy(update={"privileged": False}))

    def base(env_id: str) -> gym.Env[Any, Any]:
        env = gym.make(env_id)
        return wrap(env) if wrap else env

    view = PrivilegedView(base(task.randomized_id))
    loaded = load_for_env(teacher, lambda: gym.make(task.randomized_id), torch.device("cpu"), seed)
    result = evaluate(
        loaded.model,
        lambda: Privileged(base(task.target_id(cfg.target)), view),
        episodes,
        200_000 + 1_000 * seed,
        loaded.obs_rms,
    )
    return result.mean_return


def _oracle(doc: dict[str, Any], run: Path) -> str:
    seeds = doc["distillation"]["seeds"] if doc.get("distillation") else []
    if not seeds:
        return "-"
    value = float(np.mean([oracle_return(run, seed, 10) for seed in seeds]))
    untrained, ref = doc["untrained_return"], doc["reference_return"]
    if untrained is None or ref is None:
        return f"{value:.1f}"
    return f"{100 * (value - untrained) / (ref - untrained):.0f}% ({value:.1f})"


def _frac(doc: dict[str, Any], variant: str) -> str:
    row = doc["variants"].get(variant)
    if row is None or row["fraction_of_reference"] is None:
        return "-"
    return f"{100 * row['fraction_of_reference']:.0f}% ({row['final_return']['mean']:.1f})"


def transfer_table(docs: dict[str, dict[str, Any]], command: str, out: Path) -> str:
    lines = [
        f"Command: `{command}`",
        "",
        "Zero-shot on the extrapolation target, as a fraction of the way from untrained to the reference "
        "(final return in brackets; means over seeds):",
        "",
        "| task | seeds | reference | zero-shot student | zero-shot randomized | zero-shot nominal "
        "| P(student > randomized) | oracle teacher (told the target's values) | fine-tuned student "
        "| fine-tuned randomized | distillation: sim steps, wall time per seed "
        "| student / teacher in the randomized sim |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task, doc in docs.items():
        d, c = doc["distillation"] or {}, doc["comparisons"]
        p = c.get("p_student_beats_randomized_zeroshot")
        lines.append(
            f"| {task} | {len(d.get('seeds', []))} | {doc['reference_return']:.1f} "
            f"| {_frac(doc, 'zeroshot_student')} | {_frac(doc, 'zeroshot_randomized')} "
            f"| {_frac(doc, 'zeroshot_nominal')} | {'-' if p is None else f'{p:.2f}'} "
            f"| {_oracle(doc, out / task)} "
            f"| {_frac(doc, 'finetune_student')} | {_frac(doc, 'finetune')} "
            f"| {d.get('steps', 0):,}, {d.get('wall_s', 0):.0f} s "
            f"| {100 * (d.get('student_fraction_of_teacher') or 0):.0f}% |"
        )
    return "\n".join(lines)


def _timed(fn: Any, obs: np.ndarray, repeats: int) -> float:
    start = time.perf_counter()
    for i in range(repeats):
        fn(obs[i % len(obs)][None])
    return 1e6 * (time.perf_counter() - start) / repeats


def inference_times(policy: Path, repeats: int = 2000, rounds: int = 5) -> dict[str, float]:
    """Microseconds per action at batch 1 on one core: the SB3 policy's forward (PyTorch, no grad) and
    the exported ONNX graph (onnxruntime, 1 thread), interleaved in rounds; medians."""
    import onnxruntime as ort

    from simreal.training.engine.export import DeterministicPolicy, export_policy, rebuild

    torch.set_num_threads(1)
    model, rms, meta = rebuild(policy)
    module = DeterministicPolicy(meta["algo"]["name"], model.policy, rms).eval()
    onnx_path = export_policy(policy, "onnx", policy.with_suffix(".onnx"))
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    window = meta.get("history", {}).get("history_steps")
    current = meta.get("history", {}).get("current_observation", [0, 0])[1]
    obs = np.random.default_rng(0).normal(size=(64, *model.observation_space.shape)).astype(np.float32)

    def torch_action(x: np.ndarray) -> Any:
        with torch.no_grad():
            return module(torch.as_tensor(x))

    def onnx_action(x: np.ndarray) -> Any:
        if not window:
            return session.run(None, {"obs": x})
        return session.run(None, {"obs": x[:, :current], "history": x[:, current:].reshape(1, window, -1)})

    timings: dict[str, list[float]] = {"torch_us": [], "onnx_us": []}
    for _ in range(rounds):
        timings["torch_us"].append(_timed(torch_action, obs, repeats))
        timings["onnx_us"].append(_timed(onnx_action, obs, repeats))
    out = {k: float(np.median(v)) for k, v in timings.items()}
    out["params"] = float(sum(p.numel() for p in model.policy.parameters()))
    return out


def small_table(doc: dict[str, Any], run: Path, command: str) -> str:
    d = doc["distillation"]
    teacher = Path(d["per_seed"][0]["teacher_policy"])
    student = run / "student" / f"seed{d['per_seed'][0]['seed']}" / "policy.pt"
    t, s = inference_times(teacher), inference_times(student)
    from simreal.training.engine.artifacts import load_policy

    history = load_policy(student).meta["history"]["history_steps"]
    target = doc["variants"]
    lines = [
        f"Command: `{command}` (part 2)",
        "",
        "| policy | hidden units | parameters | return, randomized sim | return, target (zero-shot) "
        "| PyTorch us / action | ONNX us / action |",
        "|---|---|---|---|---|---|---|",
        f"| teacher (privileged) | 256x256 | {t['params']:,.0f} | {d['teacher_source_return']:.1f} | - "
        f"| {t['torch_us']:.0f} | {t['onnx_us']:.0f} |",
        f"| student (history of {history}) | 32x32 | {s['params']:,.0f} | {d['student_source_return']:.1f} "
        f"| {target['zeroshot_student']['final_return']['mean']:.1f} | {s['torch_us']:.0f} "
        f"| {s['onnx_us']:.0f} |",
        "",
        f"Student / teacher return in the randomized sim: **{100 * d['student_fraction_of_teacher']:.0f}%** "
        f"(mean over {len(d['seeds'])} seeds); inference on one core, batch 1, median of 5 interleaved "
        "rounds of 2,000 actions (the student's time includes its history encoder).",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--small-seeds", default="0,1,2")
    parser.add_argument("--no-small", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "runs" / "distill_bench"))
    parser.add_argument("--markdown", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra overrides")
    parser.add_argument(
        "--reuse",
        action="append",
        default=[],
        metavar="TASK=RUN_DIR",
        help="take pretrain_randomized/_nominal from an earlier run of the same config and seeds",
    )
    args = parser.parse_args()
    out, markdown = Path(args.out), Path(args.markdown)
    command = "python benchmarks/distill.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in (("tasks", args.tasks), ("seeds", args.seeds))
    )
    reuse = dict(item.split("=", 1) for item in args.reuse)
    docs = {}
    for task in [t for t in args.tasks.split(",") if t]:
        config, overrides = TASKS[task]
        if task in reuse:
            _reuse(Path(reuse[task]), out / task)
        docs[task] = _run(ROOT / "configs" / config, out, task, args.seeds, [*overrides, *args.overrides])
        table = transfer_table(docs, command, out)
        write_section(markdown, START, END, f"{START}\n\n{table}\n\n{END}", "Distillation")
    if not args.no_small:
        config = ROOT / "configs" / "quickstart.yaml"
        doc = _run(config, out, "small_policy", args.small_seeds, ["distill={}", *SMALL, "reference=false"])
        small = small_table(doc, out / "small_policy", command)
        text = f"{SMALL_START}\n\n{small}\n\n{SMALL_END}"
        write_section(markdown, SMALL_START, SMALL_END, text, "A small policy for the robot's computer")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
