"""Real-like effects as gymnasium wrappers: sensor noise and delay, lost and frozen readings,
actuator noise, delay, dead zone and saturation, and an irregular control period.

One wrapper = one effect. Every numeric parameter is a number (fixed, for a real-like target env)
or a `[low, high]` pair (drawn uniformly once per episode at reset, for randomized source training;
step counts are drawn as integers). All randomness comes from the wrapped env's `np_random`, so
`reset(seed=...)` makes a whole stack reproducible. At reset each wrapper adds its values for the
episode to `info["effects"]`, e.g. `{"action_delay.steps": 2.0, "observation_noise.std": 0.1}`;
nothing is added to step infos. Wrappers record their arguments (`RecordConstructorArgs`), so
`env.spec.make()` rebuilds a stack made from a registered env.

Order of composition: `apply_effects(env, specs)` wraps in list order, so `specs[0]` is the
innermost wrapper, closest to the physics, and the last spec is what the agent talks to. Actions
travel inward (last spec first), observations travel outward (first spec first). Example: with
`[observation_noise, observation_delay]` the delayed observation is a noisy one from k steps ago
(noise at the sensor, delay in transport); with `[action_noise, action_delay]` the command is
delayed and then the motor adds noise. Order matters when effects interact - e.g. a dropped
observation placed inside `observation_noise` gets noise added to its zeros.

YAML shape (under a target's `effects:` key)::

    effects:
      - {type: action_noise, std: 0.1}
      - {type: action_delay, steps: [0, 3]}
      - {type: observation_noise, std: 0.1, bias_std: [0.0, 0.05]}
      - {type: dropped_observation, prob: 0.01}
"""

from simreal.effects.action import ActionDelay, ActionNoise, ActuatorDeadZone, ActuatorSaturation
from simreal.effects.base import INFO_KEY, neutral_value
from simreal.effects.observation import (
    DroppedObservation,
    ObservationDelay,
    ObservationNoise,
    StuckObservation,
)
from simreal.effects.params import IntScalar, IntScalarLike, Param, Scalar, ScalarLike
from simreal.effects.presets import PRESETS, preset_effects
from simreal.effects.specs import (
    EFFECTS,
    ActionDelaySpec,
    ActionNoiseSpec,
    ActuatorDeadZoneSpec,
    ActuatorSaturationSpec,
    ControlJitterSpec,
    DroppedObservationSpec,
    EffectSpec,
    ObservationDelaySpec,
    ObservationNoiseSpec,
    StuckObservationSpec,
    apply_effects,
    parse_effects,
)
from simreal.effects.timing import ControlJitter

__all__ = [
    "EFFECTS",
    "INFO_KEY",
    "PRESETS",
    "ActionDelay",
    "ActionDelaySpec",
    "ActionNoise",
    "ActionNoiseSpec",
    "ActuatorDeadZone",
    "ActuatorDeadZoneSpec",
    "ActuatorSaturation",
    "ActuatorSaturationSpec",
    "ControlJitter",
    "ControlJitterSpec",
    "DroppedObservation",
    "DroppedObservationSpec",
    "EffectSpec",
    "IntScalar",
    "IntScalarLike",
    "ObservationDelay",
    "ObservationDelaySpec",
    "ObservationNoise",
    "ObservationNoiseSpec",
    "Param",
    "Scalar",
    "ScalarLike",
    "StuckObservation",
    "StuckObservationSpec",
    "apply_effects",
    "neutral_value",
    "parse_effects",
    "preset_effects",
]
