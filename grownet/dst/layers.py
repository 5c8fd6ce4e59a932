"""Masked conv / linear layers with trainable per-filter thresholds (ALGORITHMS.md, B1-B4).

A masked layer keeps its dense weight ``W`` and learns a threshold ``t`` per output
filter / neuron. The forward pass uses ``W * M`` with ``M = step(|W| - t[:, None])``;
``W`` is never overwritten, so a masked weight can come back. The step function's
derivative is replaced by the long-tailed estimator :func:`long_tail` in the backward
pass, which is what lets ``t`` (and pruned weights) learn.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DEAD_RATIO = 0.01  # keep ratio at or below which the guard resets a layer's thresholds


def long_tail(x: Tensor) -> Tensor:
    """The long-tailed derivative estimator ``h`` used for ``step'`` (ALGORITHMS.md B2).

    ``h(x) = 2 - 4|x|`` for ``|x| <= 0.4``, ``0.4`` for ``0.4 < |x| <= 1``, ``0`` beyond.

    Parameters
    ----------
    x
        Any tensor.

    Returns
    -------
    Tensor
        ``h(x)``, elementwise, in ``x``'s dtype.
    """
    a = x.abs()
    # Both branches stay tensors of x's dtype (a Python scalar in torch.where would
    # give the default dtype, silently turning float64 checks into float32).
    return torch.where(a <= 0.4, 2.0 - 4.0 * a, (a <= 1.0).to(x.dtype) * 0.4)


class _StepLongTail(torch.autograd.Function):
    """``step(q) = 1 if q > 0 else 0`` forward; ``grad * h(q)`` backward."""

    @staticmethod
    def forward(ctx: Any, q: Tensor) -> Tensor:
        ctx.save_for_backward(q)
        return (q > 0).to(q.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (q,) = ctx.saved_tensors
        return grad * long_tail(q)


def step_long_tail(q: Tensor) -> Tensor:
    """``step(q)`` (strict ``q > 0``) as a float tensor whose derivative is :func:`long_tail`."""
    return _StepLongTail.apply(q)


def _rows(t: Tensor, ndim: int) -> Tensor:
    """``t`` of shape (out,) viewed to broadcast against a weight with ``ndim`` dims."""
    return t.view((-1,) + (1,) * (ndim - 1))


class MaskedLayer(nn.Module):
    """Behaviour shared by :class:`MaskedConv2d` and :class:`MaskedLinear`.

    Subclasses are also ``nn.Conv2d`` / ``nn.Linear``: they own ``weight``, ``bias`` and
    the trainable ``threshold`` of shape ``(out,)``.
    """

    weight: nn.Parameter
    threshold: nn.Parameter

    # Listed first among the bases, so these wrap nn.Conv2d's / nn.Linear's own.
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._make_threshold()

    def reset_parameters(self) -> None:
        super().reset_parameters()  # type: ignore[misc]
        if "threshold" in self._parameters:  # the layer's __init__ calls this before it exists
            nn.init.zeros_(self.threshold)

    @classmethod
    def from_dense(cls, dense: nn.Module) -> MaskedLayer:
        """A masked layer that shares ``dense``'s ``weight`` and ``bias`` parameters
        (same tensors, device and dtype) with thresholds 0, in ``dense``'s train/eval mode."""
        new = cls(**cls._shape_of(dense), bias=dense.bias is not None, device="meta")
        new.weight = dense.weight
        new.bias = dense.bias
        new._make_threshold()
        return new.train(dense.training)

    @staticmethod
    def _shape_of(dense: nn.Module) -> dict[str, Any]:
        """The constructor arguments (bias and device aside) that rebuild ``dense``."""
        raise NotImplementedError

    def _make_threshold(self) -> None:
        w = self.weight
        self.threshold = nn.Parameter(torch.zeros(w.shape[0], device=w.device, dtype=w.dtype))

    def _guarded(self, abs_w: Tensor) -> tuple[Tensor, Tensor]:
        """The thresholds after the dead-layer guard, and whether it fires (0-dim bool).

        Computed on the device, without a host sync: ``keep * 100 <= numel`` is the
        keep ratio ``<= 0.01`` in exact integer arithmetic.
        """
        with torch.no_grad():
            t = self.threshold
            kept = ((abs_w - _rows(t, abs_w.ndim)) > 0).sum()
            dead = kept * round(1 / DEAD_RATIO) <= abs_w.numel()
            return torch.where(dead, torch.zeros_like(t), t), dead

    def mask(self) -> Tensor:
        """The boolean mask ``M`` the next forward pass will use, shaped like ``weight``.

        The dead-layer guard is taken into account without writing ``threshold``.
        """
        w = self.weight.detach()
        abs_w = w.abs()
        return (abs_w - _rows(self._guarded(abs_w)[0], w.ndim)) > 0

    def masked_weight(self) -> Tensor:
        """``W * M`` with the long-tailed gradient; applies the dead-layer guard.

        The guard (keep ratio ``<= 0.01``: all of this layer's thresholds become 0, then
        ``M`` is recomputed) writes ``threshold`` in place under ``no_grad`` with a masked
        fill driven by a device tensor, so no host sync is needed. Optimizer state
        (momentum) is left as it is, as in the reference code. ``t`` is never saved for
        backward (only ``|W| - t`` is), so the in-place write cannot invalidate a graph.
        """
        w = self.weight
        abs_w = w.abs()
        _, dead = self._guarded(abs_w.detach())
        with torch.no_grad():
            self.threshold.masked_fill_(dead, 0.0)
        return w * step_long_tail(abs_w - _rows(self.threshold, w.ndim))


class MaskedConv2d(MaskedLayer, nn.Conv2d):
    """``nn.Conv2d`` whose weight is masked by a trainable per-filter threshold.

    Takes the arguments of ``nn.Conv2d``; adds ``threshold`` (shape ``(out_channels,)``,
    initialised to 0 so that the layer starts dense). See :mod:`grownet.dst`.
    """

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.masked_weight(), self.bias)

    @staticmethod
    def _shape_of(conv: nn.Conv2d) -> dict[str, Any]:
        return {"in_channels": conv.in_channels, "out_channels": conv.out_channels,
                "kernel_size": conv.kernel_size, "stride": conv.stride,
                "padding": conv.padding, "dilation": conv.dilation, "groups": conv.groups,
                "padding_mode": conv.padding_mode}


class MaskedLinear(MaskedLayer, nn.Linear):
    """``nn.Linear`` whose weight is masked by a trainable per-neuron threshold.

    Takes the arguments of ``nn.Linear``; adds ``threshold`` (shape ``(out_features,)``,
    initialised to 0 so that the layer starts dense). See :mod:`grownet.dst`.
    """

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.masked_weight(), self.bias)

    @staticmethod
    def _shape_of(linear: nn.Linear) -> dict[str, Any]:
        return {"in_features": linear.in_features, "out_features": linear.out_features}


__all__ = ["DEAD_RATIO", "MaskedConv2d", "MaskedLayer", "MaskedLinear", "long_tail",
           "step_long_tail"]
