"""The stage engine: what every transfer method runs on.

The stage graph and its scheduling (`method`, `pipeline`, `executors`), the run-wide context and the
target budget (`context`), evaluation and the shared evaluation grid (`evaluation`, `loop`), training on
the target with every step counted (`target`), artifacts and checkpoints (`artifacts`, `sb3`), how
observations reach the policy (`perception`, `features`), preflight and export. The engine never imports
a method: methods are plugins (`simreal.training.methods`, or a user's own) that declare their stages.
"""

from simreal.training.engine.method import Method, Plan, Stage, Variant, plan

__all__ = ["Method", "Plan", "Stage", "Variant", "plan"]
