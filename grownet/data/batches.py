"""Device-resident batching: the whole dataset lives on the device, batches are index
gathers, shuffling and augmentation draw from one generator seeded by (seed, epoch).

Nothing here reads a value back to the host, so iterating costs no device sync.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from grownet.data.sources import AUGMENTS, Dataset
from grownet.errors import UserError

__all__ = ["DeviceLoader", "apply_crop_flip", "crop_flip", "draw_crop_flip", "epoch_seed",
           "make_loaders", "shift"]


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 63-bit generator seed for (seed, epoch).

    ``seed + epoch`` would make (seed=1, epoch=0) replay (seed=0, epoch=1); SeedSequence
    hashes the pair instead.
    """
    if seed < 0 or epoch < 0:
        raise UserError(f"seed and epoch must be >= 0, got seed={seed}, epoch={epoch}")
    state = np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0]
    return int(state >> np.uint64(1))  # manual_seed wants a value that fits in int64


def shift(x: torch.Tensor, generator: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random shifts of up to ``pad`` pixels each way, edges replicated (no flips: a
    mirrored digit is another symbol). Batched like :func:`crop_flip`."""
    return crop_flip(x, generator, pad=pad, flip=False, mode="replicate")


def crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4, flip: bool = True,
              mode: str = "constant") -> torch.Tensor:
    """Random crop after zero padding, then random horizontal flip, for a whole batch at once.

    Each image is padded by ``pad`` zeros on every side and an H×W window at a random offset
    in ``[0, 2*pad]²`` is taken; with probability 1/2 the window is mirrored left-right.
    One gather does both (the flip only reverses the column index), with no per-image loop.

    Parameters
    ----------
    x : torch.Tensor
        B×C×H×W batch.
    generator : torch.Generator
        Source of the offsets and flips; must live on ``x.device``.
    pad : int
        Padding, the largest shift.
    flip : bool
        Mirror half of the windows left-right (``False``: shifts only).
    mode : str
        ``F.pad`` mode: ``"constant"`` (zeros) or ``"replicate"`` (edge pixels).

    Returns
    -------
    torch.Tensor
        B×C×H×W augmented batch, a new tensor on ``x.device``.
    """
    draws = draw_crop_flip(len(x), generator, pad, flip)
    return apply_crop_flip(x, *draws, pad=pad, mode=mode)


def draw_crop_flip(b: int, generator: torch.Generator, pad: int = 4, flip: bool = True
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The random part of :func:`crop_flip` for ``b`` images: offsets ``dy``, ``dx`` in
    ``[0, 2*pad]`` and the flip flags, drawn in that order from ``generator``."""
    dev = generator.device
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=dev)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=dev)
    flips = torch.randint(0, 2, (b,), generator=generator, device=dev).bool()
    if not flip:
        flips = torch.zeros_like(flips)
    return dy, dx, flips


def apply_crop_flip(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flips: torch.Tensor,
                    pad: int = 4, mode: str = "constant") -> torch.Tensor:
    """The deterministic part of :func:`crop_flip`: pad, then one gather per axis."""
    b, c, h, w = x.shape
    dev = x.device
    xp = F.pad(x, (pad, pad, pad, pad), mode=mode)
    cols = torch.arange(w, device=dev)
    rows = dy[:, None] + torch.arange(h, device=dev)                     # B×H
    cols = dx[:, None] + torch.where(flips[:, None], w - 1 - cols, cols)  # B×W
    # gather rows, then columns: index tensors stay B×C×H×(W+2p) / B×C×H×W views (expand)
    xr = xp.gather(2, rows[:, None, :, None].expand(b, c, h, w + 2 * pad))
    return xr.gather(3, cols[:, None, None, :].expand(b, c, h, w))


class DeviceLoader:
    """Batches of a dataset kept on the device, in a reproducible order.

    The tensors are moved to ``device`` once. Each ``iter()`` seeds a fresh generator on
    the device from ``(seed, epoch)``, draws the permutation and the augmentation from it,
    and yields ``(xb, yb)`` batches already on the device. The epoch used is ``loader.epoch``,
    which then advances by one; ``set_epoch(e)`` picks it explicitly, so a resumed run that
    calls ``set_epoch(e)`` sees exactly the batches of the original epoch ``e``.

    Parameters
    ----------
    x : torch.Tensor
        N×C×H×W inputs (any N×... for ``augment="none"``).
    y : torch.Tensor
        N labels.
    batch_size : int
        Images per batch; the last one is smaller unless ``drop_last``.
    shuffle : bool
        Draw a new permutation each epoch (else keep the stored order).
    drop_last : bool
        Leave out the last, incomplete batch.
    augment : str
        ``"none"`` or ``"crop-flip"`` (:func:`crop_flip` with padding 4).
    device : str or torch.device
        Where the data and the batches live.
    seed : int
        With the epoch, fixes the order and the augmentation.
    rank, world_size : int
        Data-parallel shard: every process draws the same global batch (order and
        augmentation) and keeps its own contiguous slice of it, so ``world_size``
        processes together see exactly the batches of one process with the same
        ``batch_size``. ``shard_weight`` of the last batch is ``local/global * world_size``
        (scale a mean loss by it so that averaged gradients equal the global mean's; the
        last batch can split unevenly). A global batch smaller than ``world_size`` is
        dropped, as no shard may be empty.
    min_batch : int
        The fewest samples a rank's share of the last batch may hold; a smaller last
        batch is dropped. ``make_loaders`` asks 2 of its train loader: BatchNorm cannot
        normalise a single sample in training.

    Examples
    --------
    >>> loader = DeviceLoader(ds.x_train, ds.y_train, 128, device="cuda", seed=0)
    >>> for epoch in range(start, epochs):
    ...     loader.set_epoch(epoch)
    ...     for xb, yb in loader:
    ...         ...
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = False,
        augment: str = "none",
        device: str | torch.device = "cpu",
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        min_batch: int = 1,
    ) -> None:
        if not 0 <= rank < world_size:
            raise UserError(f"DeviceLoader: rank {rank} is not in [0, world_size={world_size})")
        if len(x) != len(y):
            raise UserError(f"DeviceLoader: x has {len(x)} samples but y has {len(y)}; pass "
                            "inputs and labels of the same length")
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
                or batch_size < 1:
            raise UserError(f"DeviceLoader: batch_size must be a positive int, got {batch_size!r}")
        if augment not in AUGMENTS:
            raise UserError(f"DeviceLoader: unknown augment {augment!r}; use one of "
                            f"{', '.join(AUGMENTS)}")
        if augment != "none" and x.dim() != 4:
            raise UserError(f"DeviceLoader: crop-flip needs N×C×H×W images, got shape "
                            f"{tuple(x.shape)}; use augment='none'")
        epoch_seed(seed, 0)  # validates the seed now rather than at the first epoch
        self.device = torch.device(device)
        self.x = x.to(self.device)
        self.y = y.to(self.device)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.rank, self.world_size = rank, world_size
        self.min_batch = max(1, int(min_batch))
        self.shard_weight = 1.0

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter()`` produce the batches of ``epoch``."""
        epoch_seed(self.seed, epoch)
        self.epoch = epoch

    def __len__(self) -> int:
        n, b = len(self.x), self.batch_size
        if self.drop_last or 0 < n % b < self.world_size * self.min_batch:
            return n // b
        return -(-n // b)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        # a fresh generator per epoch: the order depends on (seed, epoch) only, not on
        # how many epochs this object has served before
        gen = torch.Generator(device=self.device)
        gen.manual_seed(epoch_seed(self.seed, epoch))
        return self._batches(gen)

    def _batches(self, gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, bs = len(self.x), self.batch_size
        order = torch.randperm(n, generator=gen, device=self.device) if self.shuffle else None
        for i in range(len(self)):
            lo, hi = i * bs, min((i + 1) * bs, n)
            if order is None:
                xb, yb = self.x[lo:hi], self.y[lo:hi]
            else:
                idx = order[lo:hi]
                xb, yb = self.x.index_select(0, idx), self.y.index_select(0, idx)
            draws = None
            if self.augment != "none":  # drawn for the global batch: shards stay in step
                pad = 4 if self.augment == "crop-flip" else 2
                draws = draw_crop_flip(hi - lo, gen, pad, flip=self.augment == "crop-flip")
            if self.world_size > 1:
                part = self._shard(hi - lo)
                xb, yb = xb[part], yb[part]
                if draws is not None:
                    draws = tuple(d[part] for d in draws)
                self.shard_weight = (part.stop - part.start) * self.world_size / (hi - lo)
            if draws is not None:
                mode = "constant" if self.augment == "crop-flip" else "replicate"
                xb = apply_crop_flip(xb, *draws, pad=pad, mode=mode)
            yield xb, yb

    def _shard(self, n: int) -> slice:
        """This rank's contiguous part of a global batch of ``n`` (sizes differ by <= 1)."""
        base, extra = divmod(n, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    def __repr__(self) -> str:
        return (f"DeviceLoader(n={len(self.x)}, batch_size={self.batch_size}, "
                f"batches={len(self)}, shuffle={self.shuffle}, drop_last={self.drop_last}, "
                f"augment={self.augment!r}, device={str(self.device)!r}, seed={self.seed}, "
                f"epoch={self.epoch})")


def make_loaders(
    ds: Dataset,
    batch_size: int,
    device: str | torch.device = "cpu",
    seed: int = 0,
    test_batch_size: int | None = None,
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[DeviceLoader, DeviceLoader]:
    """Train and test loaders for a :class:`Dataset`.

    The train loader shuffles and applies ``ds.augment``; the test loader keeps the stored
    order and never augments.

    Parameters
    ----------
    ds : Dataset
        From :func:`~grownet.data.load_dataset`.
    batch_size : int
        Train batch size.
    device : str or torch.device
        Where both loaders keep their data.
    seed : int
        Seed of the train order and augmentation.
    test_batch_size : int, optional
        Test batch size; ``batch_size`` if not given.
    drop_last : bool
        Drop the last incomplete train batch (the test loader never drops). A last train
        batch that would give some rank a single sample is always dropped (BatchNorm
        cannot train on one sample).
    rank, world_size : int
        Data-parallel shard of both loaders (see :class:`DeviceLoader`).

    Returns
    -------
    (DeviceLoader, DeviceLoader)
        ``(train_loader, test_loader)``.
    """
    train = DeviceLoader(ds.x_train, ds.y_train, batch_size, shuffle=True, drop_last=drop_last,
                         augment=ds.augment, device=device, seed=seed, rank=rank,
                         world_size=world_size, min_batch=2)
    if len(train) == 0:
        raise UserError(f"{ds.name}: the train split holds {len(ds.x_train)} samples, too "
                        f"few for one batch of at least {2 * world_size}; use more data")
    if len(ds.x_test) == 0:
        raise UserError(f"{ds.name}: the test split holds no samples; use a dataset with a "
                        "test split")
    test = eval_loader(ds.x_test, ds.y_test, test_batch_size or batch_size, device, rank,
                       world_size)
    return train, test


def make_val_loader(ds: Dataset, batch_size: int, device: str | torch.device = "cpu",
                    rank: int = 0, world_size: int = 1) -> DeviceLoader | None:
    """The loader of ``ds``'s validation split (stored order, no augmentation), or
    ``None`` when it has none (see :meth:`Dataset.hold_out`)."""
    if ds.x_val is None:
        return None
    return eval_loader(ds.x_val, ds.y_val, batch_size, device, rank, world_size)


def eval_loader(x: torch.Tensor, y: torch.Tensor, batch_size: int,
                device: str | torch.device = "cpu", rank: int = 0, world_size: int = 1
                ) -> DeviceLoader:
    """A loader for evaluation (a test or validation split): stored order, no
    augmentation; sharded like :func:`make_loaders`' loaders."""
    return DeviceLoader(x, y, batch_size, shuffle=False, augment="none", device=device,
                        seed=0, rank=rank, world_size=world_size)
