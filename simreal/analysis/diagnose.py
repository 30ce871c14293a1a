"""`simreal diagnose POLICY --target ID`: how far a target is from what the policy was trained on, measured
with a few counted target episodes before any fine-tuning spends the robot's time.

The policy runs (deterministically) for N episodes on its randomized source sim - free - and on the target.
From the two sets of transitions:

- observation shift: per observation dimension, the standardized mean shift (target mean - source mean,
  in source standard deviations), and a classifier two-sample test - a logistic regression trained to
  tell source from target observations, its AUC on held-out halves (0.5: indistinguishable);
- dynamics gap: a one-step forward model (ridge regression of the observation change on observation and
  action, fit on source transitions); its error on target transitions relative to held-out source
  transitions, per dimension. ~1 where the target moves like the source; the `score` is the geometric
  mean of the per-dimension ratios;
- critic calibration: the critic's value of each visited state (PPO: V(s); SAC/TD3: Q(s, pi(s))) against
  the discounted return that followed, on the target and on the source: bias in units of the realized
  returns' spread, and their correlation;
- a verdict with reasons: deploy zero-shot, fine-tune (with suggested settings), or widen the source
  randomization of the named parameters (where the target reports its physics, `info["dynamics"]`, the
  ones outside the ranges pretraining saw).

Writes `diagnose.json` (keys `observation_shift`, `dynamics_gap`, `critic_calibration`, `verdict`, and the
target steps it took) and `diagnose.md`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from scipy import stats

from simreal.simulation.accounting import TargetLedger, counted_env
from simreal.simulation.calibration.gap import forward_model_gap
from simreal.training.engine.artifacts import atomic_write_text, load_policy
from simreal.training.engine.evaluation import normalize
from simreal.training.engine.sb3.loading import LoadedPolicy, load_for_env

GAP_DEPLOY = 1.5  # dynamics-gap score below which the target moves like the source
AUC_DEPLOY = 0.75  # observation-shift AUC below which the target looks like the source
GAP_WIDEN = 4.0  # a gap this large is more than fine-tuning should be asked to bridge


@dataclass
class Rollouts:
    """Transitions of the policy on one env: observations (as the policy sees them), actions, next
    observations, values, realized discounted returns, episode returns and reported physics."""

    obs: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    next_obs: list[np.ndarray] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    returns_to_go: list[float] = field(default_factory=list)
    episode_returns: list[float] = field(default_factory=list)
    dynamics: dict[str, tuple[float, float]] = field(default_factory=dict)  # reported physics: min, max
    steps: int = 0

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.array(self.obs), np.array(self.actions), np.array(self.next_obs)


def _value(model: Any, obs: np.ndarray) -> float:
    """The critic's value of `obs` under the deterministic policy."""
    policy = model.policy
    tensor, _ = policy.obs_to_tensor(obs)
    with torch.no_grad():
        if hasattr(policy, "predict_values"):
            return float(policy.predict_values(tensor)[0, 0])
        action = policy._predict(tensor, deterministic=True)
        return float(torch.cat(policy.critic(tensor, action), dim=1).min(dim=1).values[0])


def collect(loaded: LoadedPolicy, make_env: Any, episodes: int, seed: int, gamma: float) -> Rollouts:
    """`episodes` deterministic episodes of the policy on `make_env()`'s env."""
    out = Rollouts()
    env = make_env()
    try:
        for k in range(episodes):
            obs, info = env.reset(seed=seed + k)
            for key, value in info.get("dynamics", {}).items():
                low, high = out.dynamics.get(key, (value, value))
                out.dynamics[key] = (min(low, value), max(high, value))
            rewards, done = [], False
            while not done:
                seen = normalize(loaded.encoder.encode(obs), loaded.obs_rms)
                action, _ = loaded.model.predict(seen, deterministic=True)
                out.values.append(_value(loaded.model, seen))
                nxt, reward, terminated, truncated, info = env.step(action)
                out.obs.append(np.asarray(seen, dtype=np.float64).ravel())
                out.actions.append(np.asarray(action, dtype=np.float64).ravel())
                out.next_obs.append(
                    np.asarray(
                        normalize(loaded.encoder.encode(nxt), loaded.obs_rms), dtype=np.float64
                    ).ravel()
                )
                rewards.append(float(reward))
                done = terminated or truncated
                obs = nxt
            out.steps += len(rewards)
            out.episode_returns.append(sum(rewards))
            running, to_go = 0.0, []
            for r in reversed(rewards):
                running = r + gamma * running
                to_go.append(running)
            out.returns_to_go += to_go[::-1]
    finally:
        env.close()
    return out


def observation_shift(source: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    """Standardized mean shift per dimension and a classifier two-sample test's held-out AUC."""
    std = source.std(axis=0)
    spread = np.where(std > 1e-8, std, 1.0)
    shift = (target.mean(axis=0) - source.mean(axis=0)) / spread
    auc = _classifier_auc(source, target, rng)
    return {"per_dimension": shift.tolist(), "max_abs": float(np.max(np.abs(shift))), "auc": auc}


def _classifier_auc(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> float:
    """Logistic regression (gradient descent on standardized inputs) telling `a` from `b`; AUC on the
    held-out half of each (two folds, averaged)."""
    x = np.vstack([a, b])
    y = np.r_[np.zeros(len(a)), np.ones(len(b))]
    x = (x - x.mean(axis=0)) / np.where(x.std(axis=0) > 1e-8, x.std(axis=0), 1.0)
    order = rng.permutation(len(x))
    halves = np.array_split(order, 2)
    aucs = []
    for train, test in ((halves[0], halves[1]), (halves[1], halves[0])):
        w, bias = np.zeros(x.shape[1]), 0.0
        for _ in range(300):
            p = 1.0 / (1.0 + np.exp(-(x[train] @ w + bias)))
            grad = p - y[train]
            w -= 0.5 * (x[train].T @ grad / len(train) + 1e-3 * w)
            bias -= 0.5 * grad.mean()
        scores, labels = x[test] @ w + bias, y[test]
        if labels.min() == labels.max():
            continue
        ranks = stats.rankdata(scores)
        positives = labels == 1
        n_pos, n_neg = positives.sum(), (~positives).sum()
        aucs.append(float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)))
    return float(np.mean(aucs)) if aucs else 0.5


def dynamics_gap(source: Rollouts, target: Rollouts, rng: np.random.Generator) -> dict[str, Any]:
    """The forward-model gap (`simreal.simulation.calibration.gap.forward_model_gap`) between the source's
    and the target's transitions, inputs the observation and the action."""
    obs, actions, nxt = source.arrays()
    t_obs, t_actions, t_nxt = target.arrays()
    return forward_model_gap(
        (np.hstack([obs, actions]), nxt - obs), (np.hstack([t_obs, t_actions]), t_nxt - t_obs), rng
    )


def critic_calibration(rollouts: Rollouts) -> dict[str, float]:
    """The critic's predicted values against the discounted returns that followed."""
    predicted, realized = np.array(rollouts.values), np.array(rollouts.returns_to_go)
    spread = realized.std() if realized.std() > 1e-8 else 1.0
    corr = (
        float(np.corrcoef(predicted, realized)[0, 1])
        if predicted.std() > 1e-8 and realized.std() > 1e-8
        else 0.0
    )
    return {
        "mean_predicted": float(predicted.mean()),
        "mean_realized": float(realized.mean()),
        "bias": float((predicted.mean() - realized.mean()) / spread),
        "correlation": corr,
    }


def outside_ranges(source: Rollouts, target: Rollouts) -> list[str]:
    """Physics the target reports outside the range the source episodes showed (by 10% of its width, or
    of the value where the source held it fixed)."""
    names = []
    for key, (value, _) in target.dynamics.items():
        if key not in source.dynamics:
            continue
        low, high = source.dynamics[key]
        margin = 0.1 * (high - low) if high > low else 0.1 * abs(low)
        if value < low - margin or value > high + margin:
            names.append(key)
    return names


def verdict(shift: dict[str, Any], gap: dict[str, Any], widen: list[str]) -> dict[str, Any]:
    """What to do, with the reasons (thresholds stated in the module, not tuned per target)."""
    score, auc = gap["score"], shift["auc"]
    reasons = [
        f"dynamics gap {score:.2f} (1 = moves like the source)",
        f"observation-shift AUC {auc:.2f} (0.5 = alike)",
    ]
    if score < GAP_DEPLOY and auc < AUC_DEPLOY:
        return {"action": "deploy_zero_shot", "reasons": reasons, "suggested_finetune": None, "widen": []}
    if score >= GAP_WIDEN and widen:
        reasons.append(f"the target's {', '.join(widen)} lie outside the pretraining ranges")
        return {
            "action": "widen_randomization",
            "reasons": reasons,
            "suggested_finetune": None,
            "widen": widen,
        }
    far = score >= GAP_WIDEN or auc >= 0.95
    suggested = {"freeze_layers": 0 if far else 1, "lr_factor": 0.3 if far else 0.1, "keep_best": True}
    if far:
        reasons.append(
            "far from the source: retrain every layer, at a larger rate, keeping the best evaluation"
        )
    return {"action": "fine_tune", "reasons": reasons, "suggested_finetune": suggested, "widen": widen}


def diagnose(
    policy: Path,
    target_id: str,
    episodes: int,
    seed: int,
    device: torch.device,
    env_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every diagnostic of `policy` on `target_id`, from `episodes` episodes on each of source and target."""
    meta = load_policy(policy, device).meta
    source_id = meta["env_id"]
    gamma = float(meta["algo"].get("kwargs", {}).get("gamma", 0.99))
    ledger = TargetLedger(purpose="other")
    rng = np.random.default_rng(seed)
    on_source = load_for_env(policy, lambda: gym.make(source_id), device, seed)
    source = collect(on_source, on_source.make_env, episodes, seed, gamma)
    on_target = load_for_env(policy, lambda: counted_env(target_id, ledger, env_kwargs or {}), device, seed)
    target = collect(on_target, on_target.make_env, episodes, seed, gamma)
    shift = observation_shift(np.array(source.obs), np.array(target.obs), rng)
    gap = dynamics_gap(source, target, rng)
    widen = outside_ranges(source, target)
    return {
        "policy": str(policy),
        "source": source_id,
        "target": target_id,
        "episodes": episodes,
        "target_steps": ledger.as_dict(),
        "source_return": float(np.mean(source.episode_returns)),
        "target_return": float(np.mean(target.episode_returns)),
        "observation_shift": shift,
        "dynamics_gap": gap,
        "critic_calibration": {"target": critic_calibration(target), "source": critic_calibration(source)},
        "verdict": verdict(shift, gap, widen),
    }


def to_markdown(d: dict[str, Any]) -> str:
    v, gap, shift = d["verdict"], d["dynamics_gap"], d["observation_shift"]
    critic = d["critic_calibration"]
    lines = [
        f"# Diagnosis: {d['policy']} on {d['target']}",
        "",
        f"{d['episodes']} episodes on the source ({d['source']}) and on the target; "
        f"{d['target_steps']['total']:,} target steps.",
        "",
        f"**Verdict: {v['action'].replace('_', ' ')}** - {'; '.join(v['reasons'])}.",
        "",
        "| diagnostic | value |",
        "|---|---|",
        f"| return: source / target | {d['source_return']:.1f} / {d['target_return']:.1f} |",
        f"| dynamics gap (forward-model error, target / source; geometric mean) | {gap['score']:.2f} |",
        f"| observation shift: classifier AUC / largest standardized mean shift | {shift['auc']:.2f} / "
        f"{shift['max_abs']:.2f} |",
        f"| critic on the target: bias (in return spreads) / correlation | {critic['target']['bias']:.2f} / "
        f"{critic['target']['correlation']:.2f} |",
        f"| critic on the source: bias / correlation | {critic['source']['bias']:.2f} / "
        f"{critic['source']['correlation']:.2f} |",
    ]
    if v["suggested_finetune"]:
        lines += ["", f"Suggested fine-tuning settings: `{json.dumps(v['suggested_finetune'])}`."]
    if v["widen"]:
        lines += ["", f"Outside the pretraining ranges: {', '.join(v['widen'])}."]
    return "\n".join(lines) + "\n"


def write(d: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps(d, indent=1), out / "diagnose.json")
    atomic_write_text(to_markdown(d), out / "diagnose.md")
