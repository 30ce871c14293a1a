"""Tiny budgets for end-to-end CLI runs in tests: a few hundred PPO steps on the quickstart task (and a
reference stage of 256 steps instead of 10x the budget)."""

from __future__ import annotations

from pathlib import Path

TINY = [
    "pretrain.timesteps=128",
    "finetune.timesteps=128",
    "evaluation.every_steps=64",
    "evaluation.episodes=1",
    "evaluation.final_episodes=1",
    "algo.kwargs.n_steps=64",
    "algo.kwargs.batch_size=32",
    "algo.kwargs.n_epochs=1",
    "algo.net_arch=[16]",
    "reference.timesteps=256",
]


def set_args(out: Path, *overrides: str, reference: bool | None = True) -> list[str]:
    """CLI options for a tiny CPU run writing under `out`; later overrides win over `TINY`.

    `reference`: True, a tiny reference stage; False, none (`reference=false`); None, the config's own."""
    args = ["--no-progress", "--device", "cpu", "--set", f"output_dir={out}"]
    tiny = [x for x in TINY if reference or not x.startswith("reference.")]
    for item in (*tiny, *(["reference=false"] if reference is False else []), *overrides):
        args += ["--set", item]
    return args
