"""The sections of an experiment config, each with its own rules: the algorithm, pretraining, fine-tuning,
evaluation, the reference, distillation and perception.

`simreal.config.ExperimentConfig` composes them; a rule that involves other sections is the section's
`check(cfg)`, which the experiment calls once everything is parsed. A method's own section (a user's
included) is a `Spec` of the same kind.
"""

from simreal.sections.calibrate import CalibrateConfig
from simreal.sections.core import (
    SEARCHABLE,
    AlgoConfig,
    AutoConfig,
    EvalConfig,
    FinetuneConfig,
    LrSchedule,
    PretrainConfig,
    ReferenceConfig,
)
from simreal.sections.distill import SUPPORTED_ALGOS, DistillConfig, MixingConfig
from simreal.sections.meta import MetaConfig
from simreal.sections.multitask import MultitaskConfig
from simreal.sections.perception import AugmentationConfig, PerceptionConfig

__all__ = [
    "SEARCHABLE",
    "SUPPORTED_ALGOS",
    "AlgoConfig",
    "AugmentationConfig",
    "AutoConfig",
    "CalibrateConfig",
    "DistillConfig",
    "EvalConfig",
    "FinetuneConfig",
    "LrSchedule",
    "MetaConfig",
    "MultitaskConfig",
    "MixingConfig",
    "PerceptionConfig",
    "PretrainConfig",
    "ReferenceConfig",
]
