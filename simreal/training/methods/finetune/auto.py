"""Budget-aware choice of fine-tuning settings, raced on the target inside its budget.

`finetune.auto: {candidates: {lr_factor: [...], freeze_layers: [...], init: [pretrained, scratch]},
budget_fraction: 0.2}` makes one model per combination - from the same source policy, or (`init:
scratch`) a fresh one at the pretraining rate. In each round every candidate still in the race trains the
same number of target steps (continuing from its own weights) and is evaluated on the same episodes (the
same seeds: common random numbers, so two candidates' returns pair episode by episode). The leader is the
best mean; a candidate is dropped once the leader beats it clearly - the paired difference's mean above
`Z` standard errors - not because it fell in the lower half of a noisy round. Rounds go on while more
than one candidate is left and the exploration (`budget_fraction` of the training budget) holds another;
what the race does not spend goes to the winner, which continues from its own weights for the rest. With
one candidate there is nothing to decide and nothing is spent. Every step - training and the selection
evaluations - is counted in the stage's ledger, so the comparison with scratch at the same budget stays
fair. Envs are opened for one candidate's round at a time and closed after it (an exclusive target never
sees two).

While the search runs, the policy a user would deploy is still the source policy, so the stage's curve
holds the source's evaluation at the grid steps the search spends and the winner's own evaluations after.
`auto.json` records every candidate's rounds, the winner, its margin over the runner-up with a bootstrap
CI and P(winner better) on the paired episodes, whether the race separated them, and the steps spent.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import Logger

from simreal import stats
from simreal.config import ExperimentConfig
from simreal.schema import ConfigError
from simreal.simulation.accounting import TargetLedger
from simreal.training.engine.artifacts import atomic_write_text
from simreal.training.engine.context import Context
from simreal.training.engine.evaluation import EvalResult, evaluate
from simreal.training.engine.loop import obs_rms_of
from simreal.training.engine.sb3.adaptive import KLAdaptiveRate, rate_callback
from simreal.training.engine.sb3.guards import KeepBest

log = logging.getLogger("simreal")
AUTO = "auto.json"


Z = 2.0
"""A candidate is dropped when the leader's paired advantage exceeds this many standard errors."""


def plan(n_candidates: int, exploration: int, rollout: int) -> tuple[int, int]:
    """(rounds, target steps per candidate per round): the exploration split so that every candidate could
    run `rounds` rounds even if none were dropped - ceil(log2 n) + 1 rounds (at least 2), fewer when the
    exploration cannot hold as many rollouts - in whole rollouts. (0, 0): a lone candidate has nothing to
    race, or the exploration cannot give every candidate one rollout."""
    if n_candidates <= 1:
        return 0, 0
    rounds = min(max(2, math.ceil(math.log2(n_candidates)) + 1), exploration // (n_candidates * rollout))
    if rounds < 1:
        return 0, 0
    return rounds, exploration // (n_candidates * rounds) // rollout * rollout


def selection_episodes(cfg: ExperimentConfig) -> int:
    """The most target episodes the search evaluates: every candidate in every round, and the source."""
    search = cfg.finetune.auto
    if search is None:
        return 0
    n = len(search.settings())
    rounds = max(2, math.ceil(math.log2(n)) + 1) if n > 1 else 0  # the most `plan` gives any budget
    episodes = search.episodes or cfg.evaluation.episodes
    return (n * rounds) * episodes + cfg.evaluation.episodes if n > 1 else 0


def with_setting(cfg: ExperimentConfig, setting: dict[str, Any]) -> ExperimentConfig:
    """`cfg` with one candidate's fine-tuning settings (already validated at config load; `init` is
    where the candidate starts, not a fine-tuning key)."""
    typed = {k: int(v) if k == "freeze_layers" else float(v) for k, v in setting.items() if k != "init"}
    return cfg.model_copy(update={"finetune": cfg.finetune.model_copy(update={**typed, "auto": None})})


@dataclass
class Candidate:
    setting: dict[str, Any]
    model: BaseAlgorithm
    scores: list[float]
    returns: list[list[float]] = dataclasses.field(default_factory=list)  # per round, per episode
    dropped: int | None = None  # the round it left the race in
    steer: KLAdaptiveRate | None = None  # what moves its rate, with `lr_schedule: adaptive`


@dataclass(frozen=True)
class SearchResult:
    """The winner's context (its settings) and model, the target training steps the search spent, and
    the source policy's evaluation before any of it (what the curve holds while the search runs)."""

    ctx: Context
    model: BaseAlgorithm
    spent: int
    at_start: EvalResult
    setting: dict[str, Any] = dataclasses.field(default_factory=dict)
    steer: KLAdaptiveRate | None = None  # the winner's adaptive rate, where it has one


def search(
    ctx: Context, seed: int, build: Any, ledger: TargetLedger, out: Path, keep: KeepBest | None = None
) -> SearchResult:
    """Race the candidates. `build(ctx, setting) -> (model, venv)` makes one (from the source, or fresh);
    with `keep` (keep_best) the source policy is its first best, so the deployed one is never worse."""
    auto = ctx.cfg.finetune.auto
    assert auto is not None
    settings = auto.settings()
    exploration = int(auto.budget_fraction * ctx.train_budget)
    rounds, steps = plan(len(settings), exploration, ctx.cfg.target_rollout)
    episodes = auto.episodes or ctx.cfg.evaluation.episodes
    candidates = []
    for setting in settings:
        model, venv = build(dataclasses.replace(ctx, cfg=with_setting(ctx.cfg, setting)), setting)
        venv.close()  # each round opens its own
        model.set_logger(Logger(None, []))  # scores go to auto.json; SB3 would litter a temp dir per learn()
        steer = rate_callback(model, ctx.cfg.finetune.kl_window, seed)  # its rate adapts in the race too
        candidates.append(Candidate(setting, model, [], steer=steer))
    at_start = _evaluate(ctx, candidates[0].model, seed, ledger, ctx.cfg.evaluation.episodes)
    if keep is not None:
        env = candidates[0].model.get_env()
        keep.observe(0, at_start.returns, candidates[0].model, obs_rms_of(env) if env is not None else None)
    alive = list(range(len(candidates)))
    spent, played = 0, 0
    while len(alive) > 1 and steps > 0 and spent + len(alive) * steps <= exploration:
        for i in alive:
            spent += _train(ctx, candidates[i], steps, seed, ledger, episodes, at=spent)
        played += 1
        alive = _race(candidates, alive, played)
        log.info(
            "auto seed %d round %d: %s",
            seed,
            played,
            [(candidates[i].setting, candidates[i].scores[-1]) for i in alive],
        )
    winner = max(alive, key=lambda i: candidates[i].scores[-1] if candidates[i].scores else 0.0)
    record = {
        "winner": candidates[winner].setting,
        "steps_per_round": steps,
        "rounds": played,
        "planned_rounds": rounds,
        "episodes": episodes,
        "exploration_steps": spent,
        "exploration_budget": exploration,
        "source_return": at_start.mean_return,
        "decision": _decision(candidates, winner),
        "candidates": [
            {"setting": c.setting, "scores": c.scores, "returns": c.returns, "dropped_in_round": c.dropped}
            for c in candidates
        ],
    }
    atomic_write_text(json.dumps(record, indent=1), out / AUTO)
    chosen = candidates[winner]
    return SearchResult(
        dataclasses.replace(ctx, cfg=with_setting(ctx.cfg, chosen.setting)),
        chosen.model,
        spent,
        at_start,
        chosen.setting,
        chosen.steer,
    )


def _race(candidates: list[Candidate], alive: list[int], played: int) -> list[int]:
    """The candidates still in the race after a round: those the leader does not beat clearly on the
    paired episodes (mean difference above `Z` standard errors)."""
    leader = max(alive, key=lambda i: candidates[i].scores[-1])
    keep = []
    for i in alive:
        if i == leader or not stats.clearly_above(
            candidates[leader].returns[-1], candidates[i].returns[-1], Z
        ):
            keep.append(i)
        else:
            candidates[i].dropped = played
    return keep


def _decision(candidates: list[Candidate], winner: int) -> dict[str, Any]:
    """How clearly the winner won: its margin over the best other candidate of the last round they both
    played, on the paired episodes, with a bootstrap CI and P(the winner's return is higher)."""
    others = [c for j, c in enumerate(candidates) if j != winner and c.returns]
    best = candidates[winner]
    if not others or not best.returns:
        return {"runner_up": None, "margin": None, "ci95": [None, None], "p_better": None, "separated": True}
    runner = max(others, key=lambda c: (len(c.returns), c.scores[-1]))
    k = min(len(runner.returns), len(best.returns)) - 1
    d = np.asarray(best.returns[k]) - np.asarray(runner.returns[k])
    low, high = stats.bootstrap_ci(d, "mean", rng=stats.seeded(None)) if d.size > 1 else (None, None)
    return {
        "runner_up": runner.setting,
        "round": k + 1,
        "margin": float(d.mean()),
        "ci95": [low, high],
        "p_better": float(np.mean(d > 0) + 0.5 * np.mean(d == 0)),
        "separated": all(c.dropped is not None for c in others),
        "drop_rule_se": Z,
    }


def winner_of(ctx: Context, out: Path) -> tuple[Context, dict[str, Any]] | None:
    """The winner's context and setting from an earlier attempt's `auto.json` (None: the search has not
    run)."""
    path = out / AUTO
    if not path.is_file():
        return None
    setting = json.loads(path.read_text())["winner"]
    return dataclasses.replace(ctx, cfg=with_setting(ctx.cfg, setting)), setting


def _evaluate(
    ctx: Context, model: BaseAlgorithm, seed: int, ledger: TargetLedger, episodes: int
) -> EvalResult:
    """`episodes` target episodes on the curve's seeds: every candidate and round on the same ones."""
    env = model.get_env()
    rms = obs_rms_of(env) if env is not None else None
    with ledger.doing("evaluation"):
        return evaluate(model, lambda: ctx.make_target(ledger), episodes, ctx.eval_seed(seed), rms)


def _train(
    ctx: Context,
    candidate: Candidate,
    steps: int,
    seed: int,
    ledger: TargetLedger,
    episodes: int,
    at: int,
) -> int:
    """One round for one candidate: a fresh env, `steps` more training, a selection evaluation. `at`: the
    stage's training steps before this round (the clock of the candidate's rate history)."""
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
    if candidate.steer is not None:
        candidate.steer.clock = at - before
    if steps > 0:
        model.learn(steps, callback=candidate.steer, reset_num_timesteps=False)
        if candidate.steer is not None:
            candidate.steer.settle()
    result = _evaluate(ctx, model, seed, ledger, episodes)
    candidate.scores.append(result.mean_return)
    candidate.returns.append(result.returns.tolist())
    venv.close()
    return model.num_timesteps - before


def check_budget(ctx: Context) -> None:
    """`finetune.auto` must give every candidate at least one rollout in every planned round."""
    search = ctx.cfg.finetune.auto
    if search is None or len(search.settings()) <= 1:
        return
    algo = ctx.cfg.algo
    rollout = ctx.cfg.target_rollout
    exploration = int(search.budget_fraction * ctx.train_budget)
    n = len(search.settings())
    rounds, steps = plan(n, exploration, rollout)
    if steps < rollout:
        raise ConfigError(
            f"finetune.auto.budget_fraction: {search.budget_fraction:g} of {ctx.train_budget:,} target steps "
            f"({exploration:,}) cannot give {n} candidates one rollout ({rollout:,} steps) each "
            f"(allowed: an exploration of >= {n * rollout:,} steps)"
        )
    starts = ctx.cfg.finetune_learning_starts
    if starts is not None and steps <= starts:
        raise ConfigError(
            f"finetune.auto.budget_fraction: {search.budget_fraction:g} of {ctx.train_budget:,} target steps "
            f"gives each of {n} candidates {steps:,} steps in its first round, not more "
            f"than the {starts:,} transitions {algo.name} collects before its first update "
            "(finetune.learning_starts): the search would compare untrained copies (allowed: a larger "
            "budget_fraction or a smaller finetune.learning_starts)"
        )
