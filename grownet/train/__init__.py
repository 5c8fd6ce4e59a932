"""Training: the epoch loop, evaluation, seeding, and the grow/train jobs with resume."""

from grownet.train.loop import (
    EpochResult,
    NonFiniteLoss,
    evaluate,
    resolve_device,
    seed_everything,
    train_epoch,
)

__all__ = ["EpochResult", "NonFiniteLoss", "evaluate", "resolve_device", "seed_everything",
           "train_epoch"]
