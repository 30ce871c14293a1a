"""Guards that keep fine-tuning from losing what pretraining learned - functions and hooks over an SB3
model, for PPO, SAC and TD3 alike (composition, not subclasses of every algorithm).

- `CriticWarmup(model, steps)`: the actor (and the features extractor it uses) held fixed while the
  critics learn the target's values; released at `critic_warmup_steps`.
- `L2SP(model, strength)`: each update adds `strength * ||w - w_pretrained||^2`'s gradient to every
  trained weight that came from the source (Li et al. 2018), through an optimizer pre-step hook, so SB3's
  losses are untouched (it is applied after SB3's gradient clipping).
- `layer_lr_decay(model, decay)`: the top hidden layer of each trunk learns at `decay` x the rate, the next
  one down at `decay^2`, ... and the features extractor below them all (ULMFiT); the scale is kept when SB3
  rewrites the rate from its schedule at every `train()`.
- `GradualUnfreeze`: the frozen layers thaw one at a time from the top at the listed target steps.
- `KeepBest`: the deployed policy is the best evaluated one, never worse on the evaluation than the
  zero-shot policy it started from; training stops after `patience` evaluations without improvement.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.running_mean_std import RunningMeanStd

from simreal import stats
from simreal.training.engine import artifacts as art
from simreal.training.engine.sb3 import transfer as tr

log = logging.getLogger("simreal")


def actor_parameters(model: BaseAlgorithm) -> list[nn.Parameter]:
    """Every parameter the actor's output depends on (its trunk, heads and the extractor it uses)."""
    policy = model.policy
    if isinstance(policy, ActorCriticPolicy):
        modules: list[nn.Module] = [
            policy.mlp_extractor.policy_net,
            policy.action_net,
            policy.pi_features_extractor,
        ]
        params = [p for m in modules for p in m.parameters()]
        log_std = getattr(policy, "log_std", None)
        return params + ([log_std] if isinstance(log_std, nn.Parameter) else [])
    actor = getattr(policy, "actor", None)
    if actor is None:
        raise ValueError(f"finetune.critic_warmup_steps: no actor in {type(policy).__name__}")
    return list(actor.parameters())


@dataclass
class CriticWarmup:
    """Holds the actor fixed (no gradient: no update, bit-identical) until `until_step` target steps."""

    model: BaseAlgorithm
    until_step: int
    _held: list[tuple[nn.Parameter, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # SAC's entropy coefficient keeps adapting: it does not change what the actor does.
        self._held = [(p, p.requires_grad) for p in actor_parameters(self.model)]
        for p, _ in self._held:
            p.requires_grad_(False)

    @property
    def active(self) -> bool:
        return bool(self._held)

    def update(self, step: int) -> None:
        """Release the actor once `step` reaches `until_step`."""
        if self._held and step >= self.until_step:
            for p, trainable in self._held:
                p.requires_grad_(trainable)
            self._held = []


class L2SP:
    """An L2 pull toward the pretrained weights on every trained source parameter (optimizer pre-step)."""

    def __init__(self, model: BaseAlgorithm, strength: float, skip: Iterable[nn.Parameter] = ()) -> None:
        skipped = {id(p) for p in skip}
        self.strength = strength
        self.anchors: dict[int, tuple[nn.Parameter, torch.Tensor]] = {
            id(p): (p, p.detach().clone()) for p in model.policy.parameters() if id(p) not in skipped
        }
        for opt in tr.optimizers(model):
            opt.register_step_pre_hook(self._hook)

    def penalty(self) -> torch.Tensor:
        """`strength * sum ||w - w0||^2` over the trained anchored weights (for logging and tests)."""
        terms = [((p - w0) ** 2).sum() for p, w0 in self.anchors.values() if p.requires_grad]
        return self.strength * torch.stack(terms).sum() if terms else torch.zeros(())

    def _hook(self, optimizer: torch.optim.Optimizer, *_: Any) -> None:
        with torch.no_grad():
            for group in optimizer.param_groups:
                for p in group["params"]:
                    anchor = self.anchors.get(id(p))
                    if anchor is None or not p.requires_grad:
                        continue
                    pull = 2.0 * self.strength * (p - anchor[1])
                    p.grad = pull if p.grad is None else p.grad + pull


def _layers_top_down(model: BaseAlgorithm) -> Iterator[tuple[int, nn.Linear]]:
    """(depth from the top, layer) for every hidden layer of every trunk: 1 = the top hidden layer."""
    for trunk, has_output in tr._trunks(model):
        hidden = tr._hidden_linears(trunk, has_output)
        yield from enumerate(reversed(hidden), start=1)


def layer_lr_decay(model: BaseAlgorithm, decay: float) -> int:
    """Scale each hidden layer's learning rate by `decay^depth` (depth 1 = top); features extractors get
    the deepest scale. Heads keep the full rate. Returns the number of parameter tensors rescaled."""
    if decay == 1.0:
        return 0
    scales: dict[int, float] = {}
    deepest = 0
    for depth, layer in _layers_top_down(model):
        deepest = max(deepest, depth)
        for p in layer.parameters():
            scales[id(p)] = decay**depth
    for module in model.policy.modules():
        if isinstance(module, tr.BaseFeaturesExtractor):
            for p in module.parameters():
                scales.setdefault(id(p), decay ** (deepest + 1))
    return tr.scale_lrs(model, scales)


@dataclass
class GradualUnfreeze:
    """Thaws the frozen hidden layers one at a time, the top frozen one first, at the listed steps."""

    model: BaseAlgorithm
    frozen_layers: int
    steps: list[int]

    thawed: int = 0

    def update(self, step: int) -> None:
        """Thaw every layer whose step has come (`thawed` counts them)."""
        thawed = self.thawed = sum(1 for s in self.steps if step >= s)
        for trunk, has_output in tr._trunks(self.model):
            hidden = tr._hidden_linears(trunk, has_output)[: self.frozen_layers]
            for layer in hidden[len(hidden) - thawed :] if thawed else []:
                if not all(p.requires_grad for p in layer.parameters()):
                    tr.thaw(self.model, layer)


@dataclass
class KeepBest:
    """The best evaluated policy so far (state and normalization), and when to stop looking.

    `observe(step, returns, model, rms)` after every evaluation (the returns of its episodes); `stop`
    says `patience` evaluations passed without improvement. The first evaluation (step 0, the policy
    fine-tuning started from) is the first best, so the kept policy is never worse on the evaluation than
    where fine-tuning started. With a `margin`, a later policy can replace the start only where its mean
    return beats the start's by more than `margin` standard errors of the difference - paired episode by
    episode, since every evaluation runs the same episode seeds (a goal that is hard for one policy is
    hard for the other); among those, the best is kept. Picking the highest of many noisy means favours a
    lucky one, which then falls short on fresh episodes - below the policy it started from, where
    fine-tuning gained nothing real; the margin keeps the start there. A tie goes to the later policy
    (trained longer: at a task's maximum return every evaluation ties, and the first one to reach it is
    the least trained); it does not count as an improvement for `patience`."""

    patience: int | None = None
    margin: float = 0.0
    best_value: float = float("-inf")
    best_step: int = -1
    start_returns: np.ndarray | None = None
    since_best: int = 0
    states: dict[str, Any] | None = None
    tensors: dict[str, torch.Tensor] | None = None
    obs_rms: RunningMeanStd | None = None

    @property
    def stop(self) -> bool:
        return self.patience is not None and self.since_best >= self.patience

    path: Path | None = None  # where the kept weights are saved, so a resumed stage still has them

    def observe(
        self, step: int, returns: np.ndarray, model: BaseAlgorithm, rms: RunningMeanStd | None
    ) -> bool:
        """Record an evaluation; True when it replaces the kept policy (its weights are then kept)."""
        returns = np.asarray(returns, dtype=np.float64)
        value = float(np.mean(returns))
        if self.start_returns is None and self.best_step < 0:  # the first evaluation: the start
            self.start_returns = returns
        if value >= self.best_value and self._clears_start(returns):
            self.since_best = 0 if value > self.best_value else self.since_best + 1
            self.best_value, self.best_step = value, step
            states, tensors = art.torch_state(model)
            self.states = _clone(states)
            self.tensors = {k: v.detach().clone() for k, v in tensors.items()}
            self.obs_rms = _copy_rms(rms)
            if self.path is not None:
                data = {"format": art.FORMAT, "kind": "best", "states": self.states, "tensors": self.tensors}
                extra = {"obs_rms": art.rms_state(self.obs_rms), "step": step, "value": value}
                if self.start_returns is not None:
                    extra["start_returns"] = self.start_returns.tolist()
                art.atomic_save({**data, **extra, "since_best": self.since_best}, self.path)
            return True
        self.since_best += 1
        return False

    def _clears_start(self, returns: np.ndarray) -> bool:
        """Whether `returns` beat the start's by more than `margin` standard errors of the difference
        (paired: every evaluation runs the same episode seeds). Always with no margin; a policy with the
        start's very returns ties it."""
        start = self.start_returns
        if self.margin == 0 or start is None or np.array_equal(returns, start):
            return True
        return stats.clearly_above(returns, start, self.margin)

    def resume(self, curve: list[dict[str, Any]]) -> None:
        """After a restart: the kept weights from `path`, the count of evaluations since from the curve."""
        if self.path is None or not self.path.is_file():
            return
        data = art.safe_load(self.path)
        self.states, self.tensors = data["states"], data["tensors"]
        self.obs_rms = art.rms_from(data["obs_rms"])
        self.best_step, self.best_value = int(data["step"]), float(data["value"])
        if "start_returns" in data:
            self.start_returns = np.asarray(data["start_returns"], dtype=np.float64)
        elif self.margin > 0:  # a best.pt from before the margin: a later evaluation is not the start
            log.warning(
                "%s: saved without the starting policy's episode returns - finetune.keep_best_margin "
                "cannot compare with the start for the rest of this stage (a higher mean replaces the kept "
                "policy, as with margin 0)",
                self.path,
            )
        after = sum(1 for point in curve if point["step"] > self.best_step)
        self.since_best = int(data.get("since_best", 0)) + after

    def restore(self, model: BaseAlgorithm) -> None:
        """Put the kept weights back into `model` (optimizers untouched: the model is done training)."""
        if self.states is not None and self.tensors is not None:
            art.load_torch_state(model, self.states, self.tensors, include_optimizers=False)


def _clone(state: Any) -> Any:
    if isinstance(state, torch.Tensor):
        return state.detach().clone()
    if isinstance(state, dict):
        return {k: _clone(v) for k, v in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(_clone(v) for v in state)
    return state


def _copy_rms(rms: RunningMeanStd | None) -> RunningMeanStd | None:
    if rms is None:
        return None
    out = RunningMeanStd(shape=rms.mean.shape)
    out.mean, out.var, out.count = rms.mean.copy(), rms.var.copy(), rms.count
    return out
