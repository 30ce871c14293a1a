"""PPO updates that treat each task's loss as its own objective: gradient projection between tasks
(PCGrad, Yu et al. 2020; UPGrad, from `torchjd`) instead of one gradient of the summed loss.

A minibatch holds samples of several tasks (their ids: `MultiTaskPolicy.task_ids`). SB3's PPO update
takes the gradient of one loss, the mean over the minibatch; here the loss is split by task - each
task's share `n_t / n` times the mean of its own samples' PPO terms, so the shares add up to SB3's
loss exactly - and the per-task gradients (the rows of a Jacobian) are combined by the aggregator:
`mean` sums them (SB3's update, to float rounding), `pcgrad` projects each onto the normal plane of
every other it conflicts with (negative inner product) before summing, `upgrad` projects onto the
dual cone of the rows. Everything else - clipping, value loss, entropy bonus, gradient-norm clip, the
KL early stop, the logged scalars - follows SB3 2.x's `PPO.train`.
"""

from __future__ import annotations

from types import MethodType
from typing import Any

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.utils import explained_variance

GRADIENTS = ("mean", "pcgrad", "upgrad")


def _aggregator(name: str) -> Any:
    from torchjd.aggregation import PCGrad, UPGrad  # only where a projection is asked for

    return {"pcgrad": PCGrad, "upgrad": UPGrad}[name]()


def _combine(losses: list[torch.Tensor], params: list[torch.nn.Parameter], aggregator: Any) -> float:
    """Set each parameter's `.grad` to the aggregated per-task gradients; returns the fraction of task
    pairs whose gradients conflict (negative inner product) in this minibatch."""
    from torchjd.autojac import backward, jac_to_grad

    backward(losses, inputs=params)
    for p in params:  # a parameter no task's loss reaches (an absent task's head) keeps no Jacobian
        if getattr(p, "jac", None) is None:
            setattr(p, "jac", torch.zeros((len(losses), *p.shape), dtype=p.dtype, device=p.device))  # noqa: B010
    rows = torch.cat([getattr(p, "jac").reshape(len(losses), -1) for p in params], dim=1)  # noqa: B009
    gram = rows @ rows.T
    pairs = torch.triu_indices(len(losses), len(losses), offset=1)
    conflict = float((gram[pairs[0], pairs[1]] < 0).float().mean())
    jac_to_grad(params, aggregator)
    return conflict


def projected_train(self: PPO) -> None:
    """One PPO update (SB3's `PPO.train`) with per-task gradients combined by `self.gradients`."""
    policy: Any = self.policy
    policy.set_training_mode(True)
    self._update_learning_rate(policy.optimizer)
    clip_range = self.clip_range(self._current_progress_remaining)  # type: ignore[operator]
    aggregator = _aggregator(self.gradients) if self.gradients != "mean" else None  # type: ignore[attr-defined]
    params = [p for p in policy.parameters() if p.requires_grad]
    logs: dict[str, list[float]] = {
        "entropy": [],
        "pg": [],
        "value": [],
        "clip": [],
        "kl": [],
        "conflict": [],
    }
    loss = torch.zeros(())
    continue_training = True
    for _ in range(self.n_epochs):
        for data in self.rollout_buffer.get(self.batch_size):
            values, log_prob, entropy = policy.evaluate_actions(data.observations, data.actions)
            values = values.flatten()
            advantages = data.advantages
            if self.normalize_advantage and len(advantages) > 1:
                advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
            ratio = torch.exp(log_prob - data.old_log_prob)
            surrogate = -torch.min(
                advantages * ratio, advantages * ratio.clamp(1 - clip_range, 1 + clip_range)
            )
            if self.clip_range_vf is None:
                values_pred = values
            else:
                vf = self.clip_range_vf(self._current_progress_remaining)  # type: ignore[operator]
                values_pred = data.old_values + (values - data.old_values).clamp(-vf, vf)
            value_err = (data.returns - values_pred) ** 2
            ent = -entropy if entropy is not None else log_prob
            per_sample = surrogate + self.ent_coef * ent + self.vf_coef * value_err
            loss = per_sample.mean()
            logs["pg"].append(surrogate.mean().item())
            logs["value"].append(value_err.mean().item())
            logs["entropy"].append(ent.mean().item())
            logs["clip"].append(((ratio - 1).abs() > clip_range).float().mean().item())
            with torch.no_grad():
                log_ratio = log_prob - data.old_log_prob
                kl = torch.mean(torch.exp(log_ratio) - 1 - log_ratio).item()
            logs["kl"].append(kl)
            if self.target_kl is not None and kl > 1.5 * self.target_kl:
                continue_training = False
                break
            policy.optimizer.zero_grad()
            ids = policy.task_ids(data.observations)
            tasks = torch.unique(ids).tolist()
            if aggregator is None or len(tasks) < 2:
                loss.backward()
            else:
                share = [per_sample[ids == t].sum() / len(per_sample) for t in tasks]
                logs["conflict"].append(_combine(share, params, aggregator))
            torch.nn.utils.clip_grad_norm_(policy.parameters(), self.max_grad_norm)
            policy.optimizer.step()
        self._n_updates += 1
        if not continue_training:
            break
    buffer = self.rollout_buffer
    self.logger.record("train/entropy_loss", np.mean(logs["entropy"]))
    self.logger.record("train/policy_gradient_loss", np.mean(logs["pg"]))
    self.logger.record("train/value_loss", np.mean(logs["value"]))
    self.logger.record("train/approx_kl", np.mean(logs["kl"]))
    self.logger.record("train/clip_fraction", np.mean(logs["clip"]))
    self.logger.record("train/loss", loss.item())
    self.logger.record(
        "train/explained_variance", explained_variance(buffer.values.flatten(), buffer.returns.flatten())
    )
    self.logger.record("train/std", torch.exp(policy.log_std).mean().item())
    self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
    self.logger.record("train/clip_range", clip_range)
    if logs["conflict"]:
        self.conflicts.append(float(np.mean(logs["conflict"])))  # type: ignore[attr-defined]
        self.logger.record("multitask/conflicting_fraction", float(np.mean(logs["conflict"])))


def use_gradients(model: PPO, gradients: str) -> None:
    """Make `model`'s updates combine per-task gradients with `gradients` (one of GRADIENTS)."""
    if gradients not in GRADIENTS:
        raise ValueError(f"gradients: {gradients!r} (allowed: {', '.join(GRADIENTS)})")
    if not isinstance(model, PPO):
        raise ValueError(f"gradients: {gradients} needs PPO (got {type(model).__name__})")
    model.gradients = gradients  # type: ignore[attr-defined]
    model.conflicts = []  # type: ignore[attr-defined]  # per update: the share of minibatches in conflict
    model.train = MethodType(projected_train, model)  # type: ignore[method-assign]
