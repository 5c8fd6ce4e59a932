"""Training: the epoch loop every job uses, one method object per training method (SGD,
DessiLBI, DST), and the training job (``grownet train``) with resume."""

from grownet.train.job import TrainJob
from grownet.train.loop import (
    EpochResult,
    NonFiniteLoss,
    evaluate,
    resolve_device,
    seed_everything,
    train_epoch,
)
from grownet.train.methods import METHODS, method_for

__all__ = ["METHODS", "EpochResult", "NonFiniteLoss", "TrainJob", "evaluate", "method_for",
           "resolve_device", "seed_everything", "train_epoch"]
