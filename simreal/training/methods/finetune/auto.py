"""Budget-aware choice of fine-tuning settings: successive halving on the target, inside its budget.

`finetune.auto: {candidates: {learning_rate: [...], freeze_layers: [...]}, budget_fraction: 0.2}` makes
one fine-tuning model per combination, all from the same source policy. In each round every surviving
candidate trains for the same number of target steps (continuing from its own weights), is evaluated on
the curve's episodes and seeds, and the better half goes on; the last survivor continues for the rest
of the budget. Exploration uses at most `budget_fraction` of the training budget, and every step of it -
training and the selection evaluations - is counted in the stage's ledger, so the comparison with
scratch at the same budget stays fair. Envs are opened for one candidate's round at a time and closed
after it (an exclusive target never sees two).

While the search runs, the policy a user would deploy is still the source policy, so the stage's curve
holds the source's evaluation at the grid steps the search spends (exactly what evaluating it there
gives) and the winner's own evaluations after. `auto.json` records every candidate's rounds, the winner
and the steps spent.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import Logger

from simreal.config import AutoConfig, ExperimentConfig
from simreal.schema import ConfigError
from simreal.simulation.accounting import TargetLedger
from simreal.training.engine.artifacts import atomic_write_text
from simreal.training.engine.context import Context
from simreal.training.engine.evaluation import EvalResult, evaluate
from simreal.training.engine.loop import obs_rms_of
from simreal.training.engine.sb3.guards import KeepBest

log = logging.getLogger("simreal")
AUTO = "auto.json"


def schedule(n_candidates: int, exploration: int, rollout: int) -> tuple[list[int], int]:
    """(survivors per round, target steps per candidate per round): halving until one is left, each
    round's share of `exploration` equal per candidate, in whole rollouts (0 when it cannot hold one)."""
    survivors = [n_candidates]
    while survivors[-1] > 1:
        survivors.append(math.ceil(survivors[-1] / 2))
    rounds = survivors[:-1] or [1]
    per_round = exploration // sum(rounds) // rollout * rollout
    return rounds, per_round


def selection_evaluations(auto: AutoConfig) -> int:
    """How many curve evaluations the search makes (each survivor after each round)."""
    rounds, _ = schedule(len(auto.settings()), 1, 1)
    return sum(rounds)


def with_setting(cfg: ExperimentConfig, setting: dict[str, Any]) -> ExperimentConfig:
    """`cfg` with one candidate's fine-tuning settings (already validated at config load)."""
    typed = {k: int(v) if k == "freeze_layers" else float(v) for k, v in setting.items()}
    return cfg.model_copy(update={"finetune": cfg.finetune.model_copy(update={**typed, "auto": None})})


@dataclass
class Candidate:
    setting: dict[str, Any]
    model: BaseAlgorithm
    scores: list[float]


@dataclass(frozen=True)
class SearchResult:
    """The winner's context (its settings) and model, the target training steps the search spent, and
    the source policy's evaluation before any of it (what the curve holds while the search runs)."""

    ctx: Context
    model: BaseAlgorithm
    spent: int
    at_start: EvalResult


def search(
    ctx: Context, seed: int, build: Any, ledger: TargetLedger, out: Path, keep: KeepBest | None = None
) -> SearchResult:
    """Run the successive halving. `build(ctx) -> (model, venv)` makes a candidate from the source; with
    `keep` (keep_best) the source policy is its first best, so the deployed one is never worse."""
    auto = ctx.cfg.finetune.auto
    assert auto is not None
    settings = auto.settings()
    rollout = ctx.cfg.target_rollout
    rounds, steps = schedule(len(settings), int(auto.budget_fraction * ctx.train_budget), rollout)
    candidates = []
    for setting in settings:
        model, venv = build(dataclasses.replace(ctx, cfg=with_setting(ctx.cfg, setting)))
        venv.close()  # each round opens its own
        model.set_logger(Logger(None, []))  # scores go to auto.json; SB3 would litter a temp dir per learn()
        candidates.append(Candidate(setting, model, []))
    at_start = _evaluate(ctx, candidates[0].model, seed, ledger)  # every candidate is the source here
    if keep is not None:
        env = candidates[0].model.get_env()
        keep.observe(
            0, at_start.mean_return, candidates[0].model, obs_rms_of(env) if env is not None else None
        )
    alive = list(range(len(candidates)))
    spent = 0
    for survivors in rounds:
        for i in alive:
            spent += _train(ctx, candidates[i], steps, seed, ledger)
        ranked = sorted(alive, key=lambda i: -candidates[i].scores[-1])
        alive = sorted(ranked[: math.ceil(survivors / 2)]) if survivors > 1 else ranked[:1]
        log.info(
            "auto seed %d: %s", seed, [(candidates[i].setting, candidates[i].scores[-1]) for i in ranked]
        )
    winner = candidates[alive[0]]
    record = {
        "winner": winner.setting,
        "steps_per_round": steps,
        "rounds": rounds,
        "exploration_steps": spent,
        "source_return": at_start.mean_return,
        "candidates": [{"setting": c.setting, "scores": c.scores} for c in candidates],
    }
    atomic_write_text(json.dumps(record, indent=1), out / AUTO)
    return SearchResult(
        dataclasses.replace(ctx, cfg=with_setting(ctx.cfg, winner.setting)), winner.model, spent, at_start
    )


def winner_of(ctx: Context, out: Path) -> Context | None:
    """The winner's context from an earlier attempt's `auto.json` (None when the search has not run)."""
    path = out / AUTO
    if not path.is_file():
        return None
    return dataclasses.replace(ctx, cfg=with_setting(ctx.cfg, json.loads(path.read_text())["winner"]))


def _evaluate(ctx: Context, model: BaseAlgorithm, seed: int, ledger: TargetLedger) -> EvalResult:
    env = model.get_env()
    rms = obs_rms_of(env) if env is not None else None
    with ledger.doing("evaluation"):
        return evaluate(
            model, lambda: ctx.make_target(ledger), ctx.cfg.evaluation.episodes, ctx.eval_seed(seed), rms
        )


def _train(ctx: Context, candidate: Candidate, steps: int, seed: int, ledger: TargetLedger) -> int:
    """One round for one candidate: a fresh env, `steps` more training, a selection evaluation."""
    from simreal.training.engine.stage import policy_env

    model = candidate.model
    old = model.get_env()
    rms = obs_rms_of(old) if old is not None else None
    update = ctx.cfg.finetune.obs_norm != "keep"
    venv, _ = policy_env(
        ctx,
        ctx.target_id,
        seed,
        ctx.cfg.target_n_envs,
        obs_rms=rms,
        update_stats=update,
        env_kwargs=ctx.target_kwargs(ledger),
    )
    model.set_env(venv)
    model._last_obs = None  # start from the new env's reset
    before = model.num_timesteps
    if steps > 0:
        model.learn(steps, reset_num_timesteps=False)
    candidate.scores.append(_evaluate(ctx, model, seed, ledger).mean_return)
    venv.close()
    return model.num_timesteps - before


def check_budget(ctx: Context) -> None:
    """`finetune.auto` must give every candidate at least one rollout in every round."""
    search = ctx.cfg.finetune.auto
    if search is None:
        return
    algo = ctx.cfg.algo
    rollout = ctx.cfg.target_rollout
    exploration = int(search.budget_fraction * ctx.train_budget)
    rounds, steps = schedule(len(search.settings()), exploration, rollout)
    if steps < rollout:
        need = sum(rounds) * rollout
        raise ConfigError(
            f"finetune.auto.budget_fraction: {search.budget_fraction:g} of {ctx.train_budget:,} target steps "
            f"({exploration:,}) cannot give {len(search.settings())} candidates one rollout "
            f"({rollout:,} steps) in each of their {sum(rounds)} candidate-rounds (allowed: an exploration "
            f"of >= {need:,} steps)"
        )
    starts = ctx.cfg.finetune_learning_starts
    if starts is not None and steps <= starts:
        raise ConfigError(
            f"finetune.auto.budget_fraction: {search.budget_fraction:g} of {ctx.train_budget:,} target steps "
            f"gives each of {len(search.settings())} candidates {steps:,} steps in its first round, not more "
            f"than the {starts:,} transitions {algo.name} collects before its first update "
            "(finetune.learning_starts): the search would compare untrained copies (allowed: a larger "
            "budget_fraction or a smaller finetune.learning_starts)"
        )
