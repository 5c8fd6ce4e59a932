"""The :class:`Dataset` every loader returns, and the shared steps that make one.

:func:`stratified_split` splits a labelled set keeping each class's share; ``_finish``
scales and normalises raw train/test arrays (with the train split's per-channel
statistics) into a :class:`Dataset`. The loaders themselves live in
:mod:`grownet.data.builtin`; :func:`grownet.data.load_dataset` picks one by name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch.utils.data import TensorDataset

from grownet.errors import UserError

__all__ = ["Dataset", "hold_out", "stratified_split"]


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensors field-wise is meaningless
class Dataset:
    """A classification dataset held in memory, normalised, ready to batch.

    Attributes
    ----------
    name : str
        The name it was loaded under (one of :data:`DATASETS`).
    x_train, x_test : torch.Tensor
        float32 N×C×H×W on the CPU, normalised with ``mean`` / ``std``.
    y_train, y_test : torch.Tensor
        int64 labels in ``[0, num_classes)``.
    in_shape : tuple of int
        (C, H, W) of one image.
    num_classes : int
        Number of classes.
    mean, std : tuple of float
        Per-channel mean and std of the train split (pixels scaled to [0, 1] first, except
        ``synthetic``), already subtracted / divided.
    augment : str
        The augmentation the train split is meant to get: ``"none"``, ``"crop-flip"``
        (CIFAR: pad 4, random crop, random horizontal flip) or ``"shift"`` (digits:
        random shifts of up to 2 pixels, edges replicated).
    """

    name: str
    x_train: torch.Tensor = field(repr=False)
    y_train: torch.Tensor = field(repr=False)
    x_test: torch.Tensor = field(repr=False)
    y_test: torch.Tensor = field(repr=False)
    in_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str = "none"

    @property
    def n_train(self) -> int:
        """Number of training images."""
        return len(self.x_train)

    @property
    def n_test(self) -> int:
        """Number of test images."""
        return len(self.x_test)

    def train_set(self) -> TensorDataset:
        """The train split as a ``TensorDataset``, for ``torch.utils.data.DataLoader``."""
        return TensorDataset(self.x_train, self.y_train)

    def test_set(self) -> TensorDataset:
        """The test split as a ``TensorDataset``, for ``torch.utils.data.DataLoader``."""
        return TensorDataset(self.x_test, self.y_test)


def stratified_split(
    labels: np.ndarray, test_size: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into train and test so that every class keeps its share.

    The test set has ``test_size`` images (an int) or ``ceil(test_size * N)`` (a float in
    (0, 1)), shared among classes in proportion to their counts (largest remainders get the
    leftover ones). Both index arrays come in a seeded random order, not sorted by label.

    Parameters
    ----------
    labels : numpy.ndarray
        N integer labels.
    test_size : float or int
        Fraction or number of test images.
    seed : int
        Seed of the permutation; the same seed always gives the same split.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Train indices and test indices, disjoint, covering ``range(N)``.
    """
    labels = np.asarray(labels)
    n = len(labels)
    n_test = math.ceil(test_size * n) if isinstance(test_size, float) else int(test_size)
    if not 0 < n_test < n:
        raise UserError(f"test_size {test_size} leaves no train or no test images out of {n}; "
                        "use a fraction in (0, 1) or a count in [1, N-1]")
    classes, counts = np.unique(labels, return_counts=True)
    ideal = n_test * counts / n
    per_class = np.floor(ideal).astype(np.int64)
    # largest remainders first, ties to the lower class, so the total is exactly n_test
    extra = np.argsort(-(ideal - per_class), kind="stable")[: n_test - per_class.sum()]
    per_class[extra] += 1
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    is_test = np.zeros(n, dtype=bool)
    permuted = labels[perm]
    for c, k in zip(classes, per_class):
        is_test[np.flatnonzero(permuted == c)[:k]] = True  # first k of class c in the order
    # shuffle again: taking each class's first k leaves the train order biased (the classes
    # whose quota filled last are missing from its start)
    train, test = perm[~is_test], perm[is_test]
    return train[rng.permutation(len(train))], test[rng.permutation(len(test))]


def hold_out(ds: Dataset, fraction: float, seed: int = 0) -> tuple[Dataset, Dataset | None]:
    """Carve a validation split out of ``ds``'s train split (stratified, seeded).

    Parameters
    ----------
    ds
        The dataset.
    fraction
        Share of the train images held out, in ``[0, 1)``; 0 holds out nothing.
    seed
        Seed of the split.

    Returns
    -------
    (Dataset, Dataset or None)
        ``ds`` with the remaining train images, and a dataset whose *test* split is the
        held-out images (its train split is empty); ``None`` when ``fraction`` is 0.
        The normalisation stays the original train split's.
    """
    if not fraction:
        return ds, None
    keep, val = stratified_split(ds.y_train.numpy(), float(fraction), seed)
    keep_t, val_t = torch.from_numpy(keep), torch.from_numpy(val)
    train = replace(ds, x_train=ds.x_train[keep_t], y_train=ds.y_train[keep_t])
    held = replace(ds, x_train=ds.x_train[:0], y_train=ds.y_train[:0],
                   x_test=ds.x_train[val_t], y_test=ds.y_train[val_t])
    return train, held


def _channel_stats(
    raw: torch.Tensor, x: torch.Tensor, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (population) std of ``x`` = ``raw / scale``, in float64."""
    if raw.dtype == torch.uint8:
        # exact and fast: a 256-bin histogram per channel (CIFAR-10: 0.3 s, where a float64
        # copy of the 600 MB train split takes 8 s on a laptop)
        hist = torch.stack([torch.bincount(raw[:, c].reshape(-1), minlength=256)
                            for c in range(raw.shape[1])]).double()
        vals = torch.arange(256, dtype=torch.float64) / scale
        n = hist.sum(dim=1)
        mean = (hist * vals).sum(dim=1) / n
        var = (hist * vals**2).sum(dim=1) / n - mean**2
    else:  # small float sets (digits, synthetic): float64 sums are cheap
        var, mean = torch.var_mean(x.double(), dim=(0, 2, 3), correction=0)
    return mean, var.clamp_min(0).sqrt().clamp_min(1e-8)


def _finish(
    name: str,
    x_train: np.ndarray | torch.Tensor,
    y_train: np.ndarray | torch.Tensor,
    x_test: np.ndarray | torch.Tensor,
    y_test: np.ndarray | torch.Tensor,
    num_classes: int,
    scale: float,
    augment: str = "none",
) -> Dataset:
    """Scale images by 1/scale, normalise both splits with the train statistics."""
    xs = []
    for x in (x_train, x_test):
        t = torch.as_tensor(x).to(torch.float32, copy=True)  # fresh: normalised in place
        if scale != 1.0:
            t.mul_(1.0 / scale)
        xs.append(t)
    xtr, xte = xs
    mean, std = _channel_stats(torch.as_tensor(x_train), xtr, scale)
    m, s = mean.float()[None, :, None, None], std.float()[None, :, None, None]
    for t in (xtr, xte):
        t.sub_(m).div_(s)
    return Dataset(
        name=name,
        x_train=xtr.contiguous(),
        y_train=torch.as_tensor(y_train).to(torch.int64),
        x_test=xte.contiguous(),
        y_test=torch.as_tensor(y_test).to(torch.int64),
        in_shape=tuple(int(d) for d in xtr.shape[1:]),  # type: ignore[arg-type]
        num_classes=num_classes,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        augment=augment,
    )
