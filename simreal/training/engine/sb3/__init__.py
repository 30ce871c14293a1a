"""The stable-baselines3 adapter: building and loading models, moving weights between them, freezing,
the fine-tuning guards and checkpoints - every work-around of SB3's behaviour lives here."""
