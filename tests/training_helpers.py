"""Helpers the tests of several modules share: PLAN, TRAINING."""

TRAINING = {
    "learning_rate": 2e-3,
    "weight_decay": 0.01,
    "temperature": 0.05,
    "symmetric": False,
    "warmup_fraction": 0.1,
    "freeze_embeddings": False,
    "seed": 0,
}


PLAN = {
    "alpha": 0.5,
    "batch_size": 16,
    "epochs": 6,
    "seed": 0,
    "mono_language_sampling": "uniform",
    "drop_last": True,
    "development_fraction": 0.0,
    "development_seed": 0,
}
