"""The training layer: stages and their scheduling, transfer, checkpoints, artifacts, evaluation,
perception."""
