"""Transfer a pretrained policy to a target env: copy weights, freeze, re-init heads, rebuild optimizers.

Plain functions over an SB3 model (composition, not subclasses):
- `freeze_features(model)`: every features extractor (actor's and critic's when not shared) stops training;
- `freeze_layers(model, k)`: the first k hidden layers of each actor and critic trunk stop training;
- `reinit_heads(model)`: fresh output layers (action mean/log-std, value or Q outputs);
- `rebuild_optimizers(model)`: optimizers over trainable parameters only, at the schedule's current rate;
- `act_from_policy(model, learning_starts)`: an off-policy model's warm-up acts with its (pretrained) policy.
Frozen modules are held in eval mode (BatchNorm statistics and Dropout fixed) by a forward pre-hook,
because SB3 switches the whole policy to train mode before every update. Target networks (SAC, TD3)
are never trained by gradients; SB3's Polyak averaging moves them toward the online networks, whose
frozen parts stay bit-identical.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor


@dataclass(frozen=True)
class TransferSummary:
    """What `transfer` did: frozen parameter names and parameter counts."""

    frozen: tuple[str, ...]
    trainable_params: int
    total_params: int


def _hold_eval(module: nn.Module) -> None:
    """Keep `module` in eval mode even after SB3 calls `.train()` on its parent."""

    def hook(mod: nn.Module, _inputs: object) -> None:
        if mod.training:
            mod.eval()

    if not getattr(module, "_simreal_hold_eval", False):
        module.register_forward_pre_hook(hook)
        module._simreal_hold_eval = True  # type: ignore[assignment]
    module.eval()


def _freeze(module: nn.Module) -> None:
    module.requires_grad_(False)
    _hold_eval(module)


def freeze_features(model: BaseAlgorithm) -> None:
    """Freeze every features extractor of the policy (shared or separate, online and target)."""
    for module in model.policy.modules():
        if isinstance(module, BaseFeaturesExtractor):
            _freeze(module)


def _trunks(model: BaseAlgorithm) -> list[tuple[nn.Module, bool]]:
    """(Sequential, ends_with_output_layer) for every actor/critic MLP trunk of the policy."""
    policy = model.policy
    if isinstance(policy, ActorCriticPolicy):
        return [(policy.mlp_extractor.policy_net, False), (policy.mlp_extractor.value_net, False)]
    trunks: list[tuple[nn.Module, bool]] = []
    actor = getattr(policy, "actor", None)
    if actor is not None and hasattr(actor, "latent_pi"):
        trunks.append((actor.latent_pi, False))
    elif actor is not None and hasattr(actor, "mu"):
        trunks.append((actor.mu, True))
    critic = getattr(policy, "critic", None)
    for q_net in getattr(critic, "q_networks", []):
        trunks.append((q_net, True))
    if not trunks:
        raise ValueError(f"finetune.freeze_layers: no MLP trunks found in {type(policy).__name__}")
    return trunks


def _hidden_linears(trunk: nn.Module, has_output: bool) -> list[nn.Linear]:
    linears = [m for m in trunk.modules() if isinstance(m, nn.Linear)]
    return linears[:-1] if has_output else linears


def freeze_layers(model: BaseAlgorithm, k: int) -> None:
    """Freeze the first `k` hidden layers of every actor and critic trunk."""
    if k == 0:
        return
    for trunk, has_output in _trunks(model):
        hidden = _hidden_linears(trunk, has_output)
        if k > len(hidden):
            raise ValueError(
                f"finetune.freeze_layers: {k} exceeds the {len(hidden)} hidden layers of the network "
                f"(allowed: 0..{len(hidden)})"
            )
        for layer in hidden[:k]:
            _freeze(layer)


def _heads(model: BaseAlgorithm) -> list[nn.Linear]:
    policy = model.policy
    if isinstance(policy, ActorCriticPolicy):
        heads = [policy.action_net, policy.value_net]
        return [m for h in heads for m in h.modules() if isinstance(m, nn.Linear)]
    out: list[nn.Linear] = []
    actor = getattr(policy, "actor", None)
    if actor is not None and hasattr(actor, "latent_pi"):
        out += [m for h in (actor.mu, actor.log_std) for m in h.modules() if isinstance(m, nn.Linear)]
    for trunk, has_output in _trunks(model):
        if has_output:
            out.append([m for m in trunk.modules() if isinstance(m, nn.Linear)][-1])
    return out


def head_parameters(model: BaseAlgorithm) -> list[nn.Parameter]:
    """The output layers' parameters (action mean and log-std, value and Q outputs)."""
    return [p for layer in _heads(model) for p in layer.parameters()]


def reinit_heads(model: BaseAlgorithm, seed: int) -> None:
    """Re-initialize the output layers (small orthogonal weights, zero bias), seeded."""
    gen = torch.Generator().manual_seed(seed)
    for layer in _heads(model):
        weight = torch.empty_like(layer.weight, device="cpu")
        nn.init.orthogonal_(weight, gain=0.01, generator=gen)
        with torch.no_grad():
            layer.weight.copy_(weight)
            layer.bias.zero_()
    # Target networks start from the re-initialized online ones.
    for online, target in (("actor", "actor_target"), ("critic", "critic_target")):
        if hasattr(model.policy, target):
            getattr(model.policy, target).load_state_dict(getattr(model.policy, online).state_dict())


def _trainable(params: Iterable[nn.Parameter]) -> list[nn.Parameter]:
    return [p for p in params if p.requires_grad]


def rebuild_optimizers(model: BaseAlgorithm) -> None:
    """Fresh optimizers over trainable parameters only, at the schedule's starting rate."""
    policy = model.policy
    lr = model.lr_schedule(1.0)
    cls: Any = policy.optimizer_class  # a torch optimizer class taking `lr`
    kwargs = policy.optimizer_kwargs
    if isinstance(policy, ActorCriticPolicy):
        policy.optimizer = cls(_trainable(policy.parameters()), lr=lr, **kwargs)
        return
    actor = getattr(policy, "actor", None)
    critic = getattr(policy, "critic", None)
    if actor is None or critic is None:
        raise ValueError(f"transfer: unsupported policy type {type(policy).__name__}")
    actor.optimizer = cls(_trainable(actor.parameters()), lr=lr, **kwargs)
    shared = getattr(policy, "share_features_extractor", False)
    critic_params = [
        p for name, p in critic.named_parameters() if not (shared and name.startswith("features_extractor"))
    ]
    critic.optimizer = cls(_trainable(critic_params), lr=lr, **kwargs)


def optimizers(model: BaseAlgorithm) -> Iterator[torch.optim.Optimizer]:
    """Every optimizer SB3 steps for this model (policy, actor, critic, entropy coefficient)."""
    policy = model.policy
    for owner, name in (
        (policy, "optimizer"),
        (getattr(policy, "actor", None), "optimizer"),
        (getattr(policy, "critic", None), "optimizer"),
        (model, "ent_coef_optimizer"),
    ):
        opt = getattr(owner, name, None) if owner is not None else None
        if isinstance(opt, torch.optim.Optimizer):
            yield opt


def trainable_parameter_count(model: BaseAlgorithm) -> int:
    """Number of scalar parameters some optimizer updates (frozen ones excluded)."""
    seen: set[int] = set()
    total = 0
    for opt in optimizers(model):
        for group in opt.param_groups:
            for p in group["params"]:
                if id(p) not in seen and p.requires_grad:
                    seen.add(id(p))
                    total += p.numel()
    return total


def frozen_parameter_names(model: BaseAlgorithm) -> tuple[str, ...]:
    return tuple(n for n, p in model.policy.named_parameters() if not p.requires_grad)


def reset_entropy(model: BaseAlgorithm) -> None:
    """SAC-style: start the entropy coefficient again from 1.0 (log 0) with a fresh optimizer."""
    log_ent = getattr(model, "log_ent_coef", None)
    if isinstance(log_ent, torch.Tensor):
        with torch.no_grad():
            log_ent.fill_(float(np.log(1.0)))
        model.ent_coef_optimizer = torch.optim.Adam([log_ent], lr=model.lr_schedule(1.0))  # type: ignore[attr-defined]


def floor_action_std(model: BaseAlgorithm, floor: float) -> int:
    """Raise a Gaussian policy's state-independent action std to at least `floor` (per action dimension):
    a pretrained PPO/A2C policy arrives with the std it shrank to in the source, and far from the source it
    would explore less than a fresh one (std 1). Returns how many dimensions were raised."""
    log_std = getattr(model.policy, "log_std", None)
    if not isinstance(log_std, torch.Tensor):
        return 0
    bound = float(np.log(floor))
    raised = int((log_std < bound).sum())
    with torch.no_grad():
        log_std.clamp_(min=bound)
    return raised


def summarize(model: BaseAlgorithm) -> TransferSummary:
    """Frozen names, trainable and total counts; the total holds the policy's parameters (target
    networks aside) and whatever else an optimizer trains (SAC's entropy coefficient)."""
    own = {id(p): p for n, p in model.policy.named_parameters() if "_target" not in n}
    for opt in optimizers(model):
        for group in opt.param_groups:
            own.update({id(p): p for p in group["params"]})
    total = sum(p.numel() for p in own.values())
    return TransferSummary(frozen_parameter_names(model), trainable_parameter_count(model), total)


def _backbone_param_ids(model: BaseAlgorithm) -> set[int]:
    """Trainable parameters inside CNN backbones (unfrozen blocks) of the policy's features extractors."""
    ids: set[int] = set()
    for module in model.policy.modules():
        backbone = getattr(module, "backbone", None)
        if isinstance(module, BaseFeaturesExtractor) and isinstance(backbone, nn.Module):
            ids |= {id(p) for p in backbone.parameters() if p.requires_grad}
    return ids


def _hold_lr_scale(optimizer: torch.optim.Optimizer) -> None:
    """Keep each group's lr at `lr_scale` x the rate SB3 writes: SB3 sets every group to the schedule's
    value at each `train()`, so the scale is re-applied when (and only when) that value changes."""

    def hook(opt: torch.optim.Optimizer, *_: Any) -> None:
        for group in opt.param_groups:
            if group.get("_written_lr") != group["lr"]:
                group["lr"] = group["lr"] * group.get("lr_scale", 1.0)
                group["_written_lr"] = group["lr"]

    optimizer.register_step_pre_hook(hook)


def _owned_optimizers(model: BaseAlgorithm) -> Iterator[tuple[Any, torch.optim.Optimizer]]:
    """(owner, optimizer) for the policy's, actor's and critic's optimizers."""
    policy = model.policy
    for owner in (policy, getattr(policy, "actor", None), getattr(policy, "critic", None)):
        opt = getattr(owner, "optimizer", None) if owner is not None else None
        if isinstance(opt, torch.optim.Optimizer):
            yield owner, opt


def scale_lrs(model: BaseAlgorithm, scales: dict[int, float]) -> int:
    """Multiply the learning rate of each parameter in `scales` (by id) by its scale; returns how many
    parameter tensors changed. Optimizers are rebuilt with one group per scale (same class, kwargs and,
    for groups already scaled, their scale times the new one), held by `_hold_lr_scale` against SB3's
    schedule. Call right after `rebuild_optimizers` (optimizer state is not carried over)."""
    policy = model.policy
    cls: Any = policy.optimizer_class
    lr = model.lr_schedule(1.0)
    changed = 0
    for owner, opt in list(_owned_optimizers(model)):
        by_scale: dict[float, list[nn.Parameter]] = {}
        for group in opt.param_groups:
            for param in group["params"]:
                scale = group.get("lr_scale", 1.0) * scales.get(id(param), 1.0)
                by_scale.setdefault(scale, []).append(param)
                changed += id(param) in scales
        if len(by_scale) == 1 and 1.0 in by_scale:
            continue
        groups = [{"params": params, "lr_scale": scale} for scale, params in by_scale.items()]
        new = cls(groups, lr=lr, **policy.optimizer_kwargs)
        _hold_lr_scale(new)
        owner.optimizer = new
    return changed


def scale_backbone_lr(model: BaseAlgorithm, factor: float) -> int:
    """Give unfrozen backbone blocks `factor` x the rate of the rest; returns their parameter count."""
    ids = _backbone_param_ids(model)
    if not ids or factor == 1.0:
        return 0
    scale_lrs(model, dict.fromkeys(ids, factor))
    return sum(p.numel() for p in model.policy.parameters() if id(p) in ids)


def thaw(model: BaseAlgorithm, layer: nn.Module) -> None:
    """Make a frozen layer trainable again and add it to the optimizer of the network that owns it."""
    params = [p for p in layer.parameters() if not p.requires_grad]
    for param in params:
        param.requires_grad_(True)
    mine = {id(p) for p in layer.parameters()}
    for owner, opt in _owned_optimizers(model):
        if owner is model.policy or any(id(p) in mine for p in owner.parameters()):
            base = opt.param_groups[0]
            opt.add_param_group({"params": params, "lr": base["lr"], "lr_scale": base.get("lr_scale", 1.0)})
            return


def act_from_policy(model: BaseAlgorithm, learning_starts: int | None) -> int | None:
    """SAC / TD3 take uniformly random actions for their first `learning_starts` steps (SB3's warm-up,
    meant for a policy that knows nothing): on a target that throws the pretrained policy away for those
    steps - and on a robot it sends random commands. Here the policy acts from the first step; gradient
    updates still wait until `learning_starts` target transitions (the config's
    `finetune_learning_starts`; None: one batch) are in the (empty) replay buffer. Returns the value in
    force, None for an on-policy model (nothing to do)."""
    if not isinstance(model, OffPolicyAlgorithm):
        return None
    model.learning_starts = int(model.batch_size if learning_starts is None else learning_starts)
    sample = model._sample_action

    def policy_sample(_learning_starts: int, *args: Any, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        return sample(0, *args, **kwargs)  # never the random warm-up branch

    model._sample_action = policy_sample  # type: ignore[method-assign,assignment]
    return model.learning_starts
