"""Turn a model's conv/linear layers into masked ones, and read its masks and thresholds."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from grownet.dst.layers import MaskedConv2d, MaskedLayer, MaskedLinear
from grownet.errors import UserError

# Exact types only: a subclass (e.g. the out_proj of nn.MultiheadAttention) may be
# used through its .weight by its owner, where a mask in forward() would never apply.
_DENSE_TO_MASKED: dict[type, type] = {nn.Conv2d: MaskedConv2d, nn.Linear: MaskedLinear}


def convert(model: nn.Module, exclude: Iterable[str] = ()) -> nn.Module:
    """Replace every ``nn.Conv2d`` / ``nn.Linear`` of ``model`` with its masked version.

    In place: each layer becomes a :class:`MaskedConv2d` / :class:`MaskedLinear` under
    the same name that shares the old ``weight`` and ``bias`` parameters and gains a
    ``threshold`` of zeros, so ``s1_l0.weight`` keeps its name, ``s1_l0.threshold``
    appears, and the output is unchanged while no weight is exactly 0. Build the
    optimizer after converting (it must see the thresholds). Forward hooks registered
    on the old layers are not carried over. Layers already masked are left as they are.

    Parameters
    ----------
    model
        Any module; a bare ``nn.Conv2d`` / ``nn.Linear`` is returned converted.
    exclude
        Qualified names of layers to keep dense (e.g. ``["head"]``).

    Returns
    -------
    nn.Module
        ``model`` itself (or the new layer, for a bare layer).

    Raises
    ------
    UserError
        ``exclude`` names a module that is not a conv/linear layer of ``model``, or the
        model has no layer to mask.
    """
    skip = set(exclude)
    layers = {name for name, m in model.named_modules() if type(m) in _DENSE_TO_MASKED
              or isinstance(m, MaskedLayer)}
    unknown = sorted(skip - layers)
    if unknown:
        raise UserError(f"convert: exclude names {unknown}, which are not conv/linear layers "
                        f"of the model; known layers: {', '.join(sorted(layers)) or 'none'}")
    if not layers - skip:
        raise UserError("convert: the model has no nn.Conv2d / nn.Linear layer to mask")
    if type(model) in _DENSE_TO_MASKED:
        return _DENSE_TO_MASKED[type(model)].from_dense(model)
    for parent_name, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            full = f"{parent_name}.{name}" if parent_name else name
            if type(child) in _DENSE_TO_MASKED and full not in skip:
                setattr(parent, name, _DENSE_TO_MASKED[type(child)].from_dense(child))
    return model


def masked_layers(model: nn.Module) -> dict[str, MaskedLayer]:
    """``{qualified name: masked layer}`` in ``model.modules()`` order (for a model built
    by :func:`grownet.build`, the names are layer ids such as ``s1_l0`` and ``head``).

    Raises
    ------
    UserError
        The model has no masked layer (call :func:`convert` first).
    """
    found = {name: m for name, m in model.named_modules() if isinstance(m, MaskedLayer)}
    if not found:
        raise UserError("the model has no masked layers; call grownet.dst.convert(model) first")
    return found


def sparsity_loss(model: nn.Module, alpha: float) -> Tensor:
    """The sparse regulariser ``alpha * sum_layers sum_o exp(-t_o)`` (ALGORITHMS.md B3).

    Stays on the device (no host sync); add it to the task loss before ``backward``.

    Parameters
    ----------
    model
        A model with masked layers.
    alpha
        The sparsity knob, ``>= 0`` (5e-4 for the MNIST nets of the paper, 5e-6 for
        CIFAR-10).

    Returns
    -------
    Tensor
        A 0-dim tensor on the thresholds' device.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) \
            or not math.isfinite(alpha) or alpha < 0:
        raise UserError(f"sparsity_loss: alpha must be a finite number >= 0, got {alpha!r}")
    return alpha * threshold_penalty(model)


def threshold_penalty(model: nn.Module) -> Tensor:
    """``sum_layers sum_o exp(-t_o)`` over the masked layers: the regulariser without
    its ``alpha`` (a 0-dim tensor on the thresholds' device, no host sync)."""
    total: Tensor | None = None
    for m in masked_layers(model).values():
        term = torch.exp(-m.threshold).sum()
        total = term if total is None else total + term.to(total.device)
    assert total is not None  # masked_layers() raises on an empty model
    return total


def masks(model: nn.Module) -> dict[str, Tensor]:
    """``{layer: boolean mask shaped like its weight}``: the masks the next forward pass
    uses (the dead-layer guard accounted for, thresholds not written). On the device."""
    return {name: m.mask() for name, m in masked_layers(model).items()}


def _kept_counts(model: nn.Module) -> tuple[list[str], list[int], list[int]]:
    """Names, kept-weight counts and weight counts of the masked layers (one host sync)."""
    layers = masked_layers(model)
    counts = [m.mask().sum() for m in layers.values()]
    dev = counts[0].device
    kept = torch.stack([c.to(dev) for c in counts]).tolist()
    return list(layers), kept, [m.weight.numel() for m in layers.values()]


def kept_counts(model: nn.Module) -> dict[str, tuple[int, int]]:
    """``{layer: (kept weights, weights)}`` per masked layer (one host sync)."""
    names, kept, total = _kept_counts(model)
    return {n: (int(k), t) for n, k, t in zip(names, kept, total)}


def weighted_keep_of(counts: dict[str, tuple[int, int]]) -> float:
    """Kept weights over all weights of the layers in ``counts`` (from
    :func:`kept_counts`): the keep ratio of the net, each layer weighted by its size."""
    return sum(k for k, _ in counts.values()) / sum(t for _, t in counts.values())


def keep_ratios(model: nn.Module) -> dict[str, float]:
    """``{layer: kept weights / all weights}`` per masked layer (one host sync)."""
    names, kept, total = _kept_counts(model)
    return {n: k / t for n, k, t in zip(names, kept, total)}


def overall_sparsity(model: nn.Module) -> float:
    """Fraction of masked (zeroed) weights over all masked layers together (one host sync)."""
    _, kept, total = _kept_counts(model)
    return 1.0 - sum(kept) / sum(total)


def kept_filters(model: nn.Module) -> dict[str, Tensor]:
    """``{layer: indices of output filters / neurons with at least one unmasked weight}``.

    CPU ``LongTensor`` s, sorted; one host sync for the whole model. A filter outside
    the list is fully masked (see :func:`grownet.dst.slim_masked` to remove it).
    """
    layers = masked_layers(model)
    alive = [m.mask().flatten(1).any(dim=1) for m in layers.values()]
    dev = alive[0].device
    flat = torch.cat([a.to(dev) for a in alive]).cpu()
    out, start = {}, 0
    for name, a in zip(layers, alive):
        out[name] = flat[start:start + a.numel()].nonzero().flatten()
        start += a.numel()
    return out


__all__ = ["convert", "keep_ratios", "kept_counts", "kept_filters", "masked_layers", "masks",
           "overall_sparsity", "sparsity_loss", "threshold_penalty", "weighted_keep_of"]
