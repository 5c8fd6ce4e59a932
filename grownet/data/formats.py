"""Strict readers for the standard on-disk dataset formats: IDX (MNIST family) and the
CIFAR python pickle batches.

Every problem with a file (missing, truncated, wrong header, wrong keys) raises
:class:`~grownet.errors.UserError` naming the file and what to do about it.
"""

from __future__ import annotations

import gzip
import io
import pickle
from pathlib import Path

import numpy as np

from grownet.errors import UserError

__all__ = [
    "IDX_IMAGES_MAGIC",
    "IDX_LABELS_MAGIC",
    "find_file",
    "read_cifar_batch",
    "read_idx",
]

# IDX magic: two zero bytes, the element type (0x08 = unsigned byte), the number of dims.
IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801


def find_file(dirs: list[Path], names: list[str]) -> Path | None:
    """Return the first ``dir / name`` that is a file, dirs outermost; None if none is.

    Parameters
    ----------
    dirs : list of Path
        Directories to look in, in order of preference.
    names : list of str
        Accepted file names (e.g. a name and its ``.gz`` variant), in order of preference.
    """
    for d in dirs:
        for n in names:
            p = d / n
            if p.is_file():
                return p
    return None


def _read_bytes(path: Path, hint: str) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"file {path} not found; {hint}") from None
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError; truncated gzip: EOFError
        raise UserError(f"file {path} is not a readable (gzip) file ({e}); {hint}") from None


def read_idx(path: str | Path, magic: int, hint: str = "re-download it") -> np.ndarray:
    """Read an IDX file of unsigned bytes (``.gz`` accepted) into a uint8 array.

    The header is checked strictly: the magic number must equal ``magic``
    (:data:`IDX_IMAGES_MAGIC` for N×H×W images, :data:`IDX_LABELS_MAGIC` for N labels)
    and the payload size must equal the product of the dimensions exactly.

    Parameters
    ----------
    path : str or Path
        The file; a name ending in ``.gz`` is decompressed first.
    magic : int
        The expected magic number; its low byte is the number of dimensions.
    hint : str
        How to fix a bad file; appended to the error message.

    Returns
    -------
    numpy.ndarray
        uint8 array with the dimensions from the header.

    Raises
    ------
    UserError
        The file is missing, not gzip where named ``.gz``, has another magic number,
        or its size does not match its header.
    """
    path = Path(path)
    raw = _read_bytes(path, hint)
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    got = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if got is not None and got != magic:  # check the magic first: it says what the file is
        raise UserError(f"file {path} is not an IDX file of {ndim}-d unsigned bytes "
                        f"(magic 0x{got:08x}, expected 0x{magic:08x}); {hint}")
    if len(raw) < header:
        raise UserError(f"file {path} is truncated ({len(raw)} bytes, header alone is {header}); "
                        f"{hint}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    want = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != want:
        raise UserError(f"file {path} has {len(raw)} bytes but its header {dims} needs {want} "
                        f"(truncated or corrupt); {hint}")
    # frombuffer is zero-copy over an immutable bytes object; copy so torch gets a writable array
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


# The CIFAR pickles hold only dicts, lists, bytes and numpy arrays. Unpickling them with a
# plain pickle.load would run any callable a tampered file names, so only numpy's array
# reconstruction (under both its numpy 1 and numpy 2 module names) is let through.
_ALLOWED_GLOBALS = {
    ("_codecs", "encode"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
}


# what a damaged or foreign pickle can raise while loading
_UNPICKLING_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
                      ImportError, IndexError, KeyError, OverflowError, MemoryError)


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays and plain containers, nothing else."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module.removeprefix("numpy.core.")  # numpy 2 name
        return super().find_class(module, name)


def read_cifar_batch(
    path: str | Path, label_key: bytes, num_classes: int, hint: str = "re-download it"
) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR python batch into (N×3×32×32 uint8 images, N int64 labels).

    The file is the standard ``pickle`` of a dict with ``b"data"`` (N×3072 uint8: 1024 red,
    then 1024 green, then 1024 blue values, each plane a row-major 32×32 image) and
    ``label_key`` (``b"labels"`` for CIFAR-10, ``b"fine_labels"`` for CIFAR-100). It is read
    as ``pickle.load(f, encoding="bytes")`` would, except that only numpy arrays may be
    constructed.

    Parameters
    ----------
    path : str or Path
        The batch file, e.g. ``cifar-10-batches-py/data_batch_1``.
    label_key : bytes
        The key of the labels in the dict.
    num_classes : int
        Labels must lie in ``[0, num_classes)``.
    hint : str
        How to fix a bad file; appended to the error message.

    Raises
    ------
    UserError
        The file is missing, is not such a pickle, or its arrays have the wrong shape,
        type or label range.
    """
    path = Path(path)
    raw = _read_bytes(path, hint)
    try:
        d = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except _UNPICKLING_ERRORS as e:  # a corrupt or foreign file
        raise UserError(f"file {path} is not a CIFAR python batch ({type(e).__name__}: {e}); "
                        f"{hint}") from None
    if not isinstance(d, dict) or b"data" not in d or label_key not in d:
        keys = sorted(d) if isinstance(d, dict) else type(d).__name__
        raise UserError(f"file {path} is not a CIFAR python batch (expected keys b'data' and "
                        f"{label_key!r}, found {keys}); {hint}")
    data = d[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * 32 * 32:
        what = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise UserError(f"file {path}: b'data' must be an N×3072 uint8 array, found {what}; "
                        f"{hint}")
    try:
        labels = np.asarray(d[label_key], dtype=np.int64)
    except (TypeError, ValueError):
        labels = np.empty(0, dtype=np.int64)
        labels_ok = False
    else:
        labels_ok = labels.ndim == 1 and len(labels) == len(data)
    if not labels_ok:
        raise UserError(f"file {path}: {label_key!r} must hold {len(data)} integer labels; {hint}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(f"file {path}: labels must lie in [0, {num_classes}), found "
                        f"[{labels.min()}, {labels.max()}]; {hint}")
    return data.reshape(-1, 3, 32, 32).copy(), labels
