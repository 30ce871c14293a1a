"""Real-like effects as gymnasium wrappers: sensor noise and delay, lost and frozen readings,
actuator noise, delay, dead zone and saturation, and an irregular control period.

One wrapper = one effect, on the shared `Effect` base (`base.py`): every numeric parameter is a number
(fixed, for a real-like target env) or a `[low, high]` pair (drawn uniformly once per episode at reset,
for randomized source training; step counts are drawn as integers). All randomness comes from the
wrapped env's `np_random`, so `reset(seed=...)` makes a whole stack reproducible. At reset each wrapper
adds its values for the episode to `info["effects"]`, e.g. `{"action_delay.steps": 2.0,
"observation_noise.std": 0.1}`; nothing is added to step infos. Wrappers record their arguments
(`RecordConstructorArgs`), so `env.spec.make()` rebuilds a stack made from a registered env.

Order of composition: `apply_effects(env, specs)` wraps in list order, so `specs[0]` is the
innermost wrapper, closest to the physics, and the last spec is what the agent talks to. Actions
travel inward (last spec first), observations travel outward (first spec first). Example: with
`[observation_noise, observation_delay]` the delayed observation is a noisy one from k steps ago
(noise at the sensor, delay in transport); with `[action_noise, action_delay]` the command is
delayed and then the motor adds noise. Order matters when effects interact - e.g. a dropped
observation placed inside `observation_noise` gets noise added to its zeros.

A user's effect is a subclass of `ActionEffect`, `ObservationEffect` or `Effect` in the user's own
package, named in YAML as `type: my_pkg.effects:GripperSlip` (see `base.py` for a complete example).

YAML shape (under a target's `effects:` key)::

    effects:
      - {type: action_noise, std: 0.1}
      - {type: action_delay, steps: [0, 3]}
      - {type: observation_noise, std: 0.1, bias_std: [0.0, 0.05]}
      - {type: dropped_observation, prob: 0.01}
"""

from simreal.simulation.effects.action import ActionDelay, ActionNoise, ActuatorDeadZone, ActuatorSaturation
from simreal.simulation.effects.base import INFO_KEY, ActionEffect, Effect, ObservationEffect, neutral_value
from simreal.simulation.effects.observation import (
    DroppedObservation,
    ObservationDelay,
    ObservationNoise,
    StuckObservation,
)
from simreal.simulation.effects.params import (
    NON_NEGATIVE,
    PROBABILITY,
    STEPS,
    IntScalar,
    IntScalarLike,
    Param,
    Rule,
    Scalar,
    ScalarLike,
)
from simreal.simulation.effects.presets import PRESETS, preset_effects
from simreal.simulation.effects.specs import (
    EFFECTS,
    SENSOR_EFFECTS,
    EffectSpec,
    apply_effects,
    effect_class,
    parse_effects,
)
from simreal.simulation.effects.timing import ControlJitter

__all__ = [
    "EFFECTS",
    "INFO_KEY",
    "NON_NEGATIVE",
    "PRESETS",
    "PROBABILITY",
    "SENSOR_EFFECTS",
    "STEPS",
    "ActionDelay",
    "ActionEffect",
    "ActionNoise",
    "ActuatorDeadZone",
    "ActuatorSaturation",
    "ControlJitter",
    "DroppedObservation",
    "Effect",
    "EffectSpec",
    "IntScalar",
    "IntScalarLike",
    "ObservationDelay",
    "ObservationEffect",
    "ObservationNoise",
    "Param",
    "Rule",
    "Scalar",
    "ScalarLike",
    "StuckObservation",
    "apply_effects",
    "effect_class",
    "neutral_value",
    "parse_effects",
    "preset_effects",
]
