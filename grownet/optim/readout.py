"""Reading Γ back: ``gamma``, ``support`` and ``w_star`` of a coupled tensor."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from grownet.errors import UserError
from grownet.optim.common import _support


class SupportReadout:
    """Mixin for :class:`~grownet.optim.DessiLBI`: Γ and its support per tensor.

    Expects ``self.param_groups`` and ``self.state`` (a ``torch.optim.Optimizer``).
    """

    param_groups: list[dict[str, Any]]
    state: Any
    _row_scale: dict[Tensor, Tensor]

    def _group_of(self, p: Tensor) -> dict[str, Any]:
        for group in self.param_groups:
            if any(q is p for q in group["params"]):
                return group
        raise UserError(
            "DessiLBI: this tensor is not one of the optimizer's parameters; pass a tensor "
            "from the param groups the optimizer was built with"
        )

    def _coupled_group_of(self, p: Tensor) -> dict[str, Any]:
        group = self._group_of(p)
        if group["structure"] == "none":
            raise UserError(
                "DessiLBI: this tensor is in a structure='none' group and has no Γ; "
                "put it in a 'filter' or 'element' group to couple it"
            )
        return group

    def row_scales(self) -> Mapping[Tensor, Tensor]:
        """The group prox scales of the last step, per filter-structured tensor.

        ``{p: scale}`` with ``scale`` shaped ``(out, 1, ...)``: ``Γ[o] = scale[o] * V[o]``,
        so ``scale[o] > 0`` exactly when row ``o`` is in Γ's support. Computed by the
        step anyway, so reading the support from it costs nothing extra (the support
        tracker does). Valid until the next step; frozen rows and tensors the last step
        skipped are absent (read Γ for them). Read-only.
        """
        return MappingProxyType(self._row_scale)

    def gamma(self, p: Tensor) -> Tensor:
        """Γ of a coupled tensor (exact zeros before its first step).

        Parameters
        ----------
        p
            A parameter of a ``"filter"`` or ``"element"`` group.

        Returns
        -------
        Tensor
            The optimizer's own Γ tensor (same shape, device and dtype as ``p``);
            treat it as read-only.
        """
        self._coupled_group_of(p)
        gam = self.state[p].get("gamma") if p in self.state else None
        return torch.zeros_like(p) if gam is None else gam

    def support(self, p: Tensor) -> Tensor:
        """Boolean support of Γ per group of ``p``.

        Returns
        -------
        Tensor
            Shape ``(p.shape[0],)`` for ``"filter"`` groups (row ``o`` selected iff
            ``Γ[o] != 0``), ``p.shape`` for ``"element"`` groups.
        """
        group = self._coupled_group_of(p)
        return _support(self.gamma(p), group["structure"])

    def w_star(self, p: Tensor) -> Tensor:
        """``W`` projected onto the support of Γ (ALGORITHMS A6), as a new tensor.

        Filter groups keep or zero whole rows; element groups keep or zero elements.
        """
        sel = self.support(p)
        if sel.shape != p.shape:
            sel = sel.view((-1,) + (1,) * (p.ndim - 1))
        return p.detach() * sel
