"""Offline datasets, standard on-disk formats, device-resident batching and augmentation.

>>> from grownet.data import load_dataset, make_loaders
>>> ds = load_dataset("mnist5k")                      # bundled real MNIST subset
>>> train, test = make_loaders(ds, batch_size=128, device="cpu", seed=0)
"""

from grownet.data.batches import (
    DeviceLoader,
    crop_flip,
    epoch_seed,
    eval_loader,
    make_loaders,
    make_val_loader,
    shift,
)
from grownet.data.formats import read_cifar_batch, read_idx
from grownet.data.sources import AUGMENTS, DATASETS, Dataset, load_dataset, stratified_split

__all__ = [
    "AUGMENTS",
    "DATASETS",
    "Dataset",
    "DeviceLoader",
    "crop_flip",
    "epoch_seed",
    "eval_loader",
    "load_dataset",
    "make_loaders",
    "make_val_loader",
    "read_cifar_batch",
    "read_idx",
    "shift",
    "stratified_split",
]
