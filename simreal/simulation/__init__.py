"""The simulation layer: tasks and their registry, randomization of physics and visuals, real-like effects,
and the observation wrappers every env of an experiment shares."""
