"""``load``: a run's final net (or the net at the end of one of its stages) as a module.

Reads only safetensors files and the JSON spec in their metadata: no pickle, so no
code from the file ever runs. The layout it reads is the run directory's
(``RUN/final/model.safetensors``, ``RUN/stages/NNN/model.safetensors``).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from grownet import dst
from grownet.errors import UserError
from grownet.nets import GrowNet, build
from grownet.spec import ArchSpec

WEIGHTS = "model.safetensors"


class LoadedNet(NamedTuple):
    """What :func:`load` returns: ``spec, model = gn.load(run)``."""

    spec: ArchSpec
    model: GrowNet


def weights_path(path: str | Path, stage: int | None = None) -> Path:
    """The safetensors file :func:`load` reads for ``path`` and ``stage``.

    ``path`` is a run directory (``final/``, or ``stages/NNN/`` for ``stage=N``), a
    folder holding ``model.safetensors`` (``final/``, ``stages/NNN/``), or the file.

    Raises
    ------
    UserError
        Nothing to load there; the message says what to pass instead.
    """
    path = Path(path)
    if stage is not None and (isinstance(stage, bool) or not isinstance(stage, int)
                              or stage < 0):
        raise UserError(f"stage must be an integer >= 0, got {stage!r}")
    if path.is_file() or (path.is_dir() and (path / WEIGHTS).is_file()):
        if stage is not None:
            raise UserError(f"stage={stage} needs a run directory, but {path} is one net's "
                            "weights; pass the run directory")
        return path if path.is_file() else path / WEIGHTS
    if not path.is_dir():
        raise UserError(f"{path} not found; pass a run directory, its final/ folder or a "
                        "model.safetensors file")
    if not any((path / name).exists() for name in ("config.toml", "final", "stages")):
        raise UserError(f"{path} is not a run directory (no config.toml, final/ or stages/); "
                        "pass the directory a training command wrote")
    if stage is None:
        file = path / "final" / WEIGHTS
        if not file.is_file():
            raise UserError(f"{file} not found: the run has not finished; run 'grownet "
                            f"resume {path}' first, or pick a finished stage with stage=N")
        return file
    folder = path / "stages" / f"{stage:03d}"
    file = folder / WEIGHTS
    if not file.is_file():
        have = sorted(int(p.parent.name) for p in (path / "stages").glob(f"[0-9]*/{WEIGHTS}"))
        why = (f"stage {stage} has not ended yet or does not exist" if not folder.is_dir()
               or have else "this run was written before grownet saved stage weights")
        raise UserError(f"{file} not found: {why}; stages with weights: "
                        f"{', '.join(map(str, have)) or 'none'}")
    return file


def weights_metadata(file: str | Path) -> dict[str, str]:
    """The metadata of a safetensors file (``arch``, ``test_acc``, ...), tensors unread.

    Raises
    ------
    UserError
        The file is not a readable safetensors file.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as err:  # corrupt, truncated or foreign: safetensors raises many kinds
        raise _damaged(Path(file), type(err).__name__) from None


def _damaged(file: Path, why: str) -> UserError:
    return UserError(f"{file} cannot be read as safetensors ({why}); it is damaged — "
                     "restore it or train the run again")


def read_weights(file: str | Path) -> tuple[ArchSpec, dict[str, torch.Tensor], dict[str, str]]:
    """``(spec, tensors, metadata)`` of a safetensors file grownet wrote (CPU tensors).

    Raises
    ------
    UserError
        The file is not a readable safetensors file, or carries no valid ``arch``.
    """
    from safetensors.torch import load_file

    file = Path(file)
    meta = weights_metadata(file)
    try:
        tensors = load_file(str(file))
    except Exception as err:  # truncated data after a valid header
        raise _damaged(file, type(err).__name__) from None
    if "arch" not in meta:
        raise UserError(f"{file} has no 'arch' in its metadata, so it was not written by "
                        "grownet; pass a run's final/ or stages/NNN/ weights")
    try:
        spec = ArchSpec.from_json(meta["arch"])
    except Exception as err:  # SpecError, or a KeyError/TypeError from a mangled dict
        raise UserError(f"{file}: its 'arch' metadata is not a valid spec ({err}); it is "
                        "damaged — restore it or train the run again") from None
    return spec, tensors, meta


def _device(device: str | torch.device | None) -> torch.device:
    try:
        dev = torch.device("cpu" if device is None else device)
    except (RuntimeError, TypeError):
        raise UserError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r} was asked for but no CUDA GPU is available; "
                        "use device='cpu'")
    return dev


def _masked_layers_in(model: nn.Module, tensors: dict[str, torch.Tensor]) -> list[str]:
    """Conv/linear layers of ``model`` that ``tensors`` hold a DST threshold for."""
    return [name for name, m in model.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear)) and f"{name}.threshold" in tensors]


def load(path: str | Path, stage: int | None = None,
         device: str | torch.device | None = None) -> LoadedNet:
    """A run's net with its weights, in eval mode, and its spec.

    Parameters
    ----------
    path
        A run directory (its final net), a ``final/`` or ``stages/NNN/`` folder, or a
        ``model.safetensors`` file written by grownet.
    stage
        With a run directory: the net at the end of stage ``stage`` (the weights its
        last epoch evaluated, ``stages/NNN/model.safetensors``) instead of the final one.
    device
        Where the model goes (default CPU); the file is always read on the CPU.

    Returns
    -------
    LoadedNet
        ``(spec, model)``: ``model`` is ``build(spec)`` holding the weights, in eval
        mode. Weights saved from a DST model (with thresholds) come back dense: the
        masks are folded into the weights and fully masked filters removed
        (:func:`grownet.dst.slim_masked`, exact in eval mode), and ``spec`` is the
        slimmed spec.

    Raises
    ------
    UserError
        Nothing to load at ``path``, a damaged file, weights that do not fit the spec
        in the file, an unknown device.
    """
    dev = _device(device)
    file = weights_path(path, stage)
    spec, tensors, _ = read_weights(file)
    model = build(spec)
    masked = _masked_layers_in(model, tensors)
    if masked:
        layers = {n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
        dst.convert(model, exclude=sorted(layers - set(masked)))
    try:
        model.load_state_dict(tensors)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1].strip()
        raise UserError(f"{file}: the weights do not fit the spec in its metadata ({first}); "
                        "the file is damaged — restore it or train the run again") from None
    model.eval()
    if masked:
        spec, model = dst.slim_masked(spec, model)
    return LoadedNet(spec, model.to(dev).eval())


__all__ = ["LoadedNet", "WEIGHTS", "load", "read_weights", "weights_metadata", "weights_path"]
