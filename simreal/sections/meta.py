"""The `meta:` block: a meta-learned initialization (Reptile, Nichol et al. 2018) whose inner loop is this
experiment's own fine-tuning (see `simreal.training.methods.meta`).

    meta:
      tasks: 16            # tasks drawn from the randomization (each a fixed draw of physics and effects)
      batch: 2             # tasks adapted to per outer step
      inner_steps: 2048    # sim steps of each inner loop (the fine-tuning the target will get)
      step_size: 0.5       # Reptile's outer step, annealed linearly to 0
      timesteps: null      # meta-training sim steps (null: pretrain.timesteps)
      init: randomized     # start from the randomized policy, or a fresh network (equal compute)
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from agents.algorithms import rollout_steps
from simreal.schema import Spec


class MetaConfig(Spec):
    """Reptile over tasks drawn from the task's randomization: each outer step adapts the current
    initialization to `batch` tasks with the configured fine-tuning (its algorithm, `finetune.lr_factor`
    rate, frozen layers) for `inner_steps` sim steps each, and moves the initialization toward the mean of
    the adapted weights by `step_size`."""

    tasks: int = Field(default=16, ge=1)
    """Meta-training tasks drawn from the randomization (inside the ranges or at their edges)."""
    batch: int = Field(default=2, ge=1)
    """Tasks adapted to per outer step (their weight changes averaged)."""
    inner_steps: int = Field(default=2048, ge=1)
    """Sim steps of each inner loop: the fine-tuning the initialization is trained to make good use of
    (at least one rollout of the algorithm)."""
    step_size: float = Field(default=0.5, gt=0, le=1)
    """Reptile's outer step (the share of the mean weight change taken), annealed linearly to 0."""
    timesteps: int | None = Field(default=None, ge=1)
    """Meta-training sim steps, inner loops together (None: `pretrain.timesteps`)."""
    init: Literal["randomized", "scratch"] = "randomized"
    """Start from the randomized policy (meta-training continues it), or a fresh network (then
    `timesteps: <pretrain.timesteps>` compares the two at equal simulation steps)."""

    def steps(self, exp: Any) -> int:
        """Meta-training sim steps."""
        return int(self.timesteps or exp.pretrain.timesteps)

    def outer_steps(self, exp: Any) -> int:
        """Outer steps the meta-training budget holds."""
        return self.steps(exp) // (self.inner_steps * self.batch)

    def check(self, exp: Any) -> None:
        rollout = rollout_steps(exp.algo.name, exp.algo.kwargs, exp.algo.n_envs)
        if self.inner_steps < rollout:
            raise ValueError(
                f"meta.inner_steps: {self.inner_steps} is less than one rollout of {exp.algo.name} "
                f"({rollout} sim steps: n_steps x n_envs) (allowed: >= {rollout})"
            )
        if self.outer_steps(exp) < 1:
            raise ValueError(
                f"meta.timesteps: {self.steps(exp)} sim steps hold no outer step of {self.batch} x "
                f"{self.inner_steps} (allowed: >= {self.batch * self.inner_steps})"
            )
        if exp.pixels or exp.sim_backend != "gymnasium":
            raise ValueError("meta: state policies on Gymnasium envs for now (allowed: pixels: false)")
