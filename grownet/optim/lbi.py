"""The :class:`DessiLBI` optimizer (ALGORITHMS.md A3): the update rule and its state."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from grownet.errors import UserError
from grownet.optim.common import (
    _FUSED_DEVICES,
    _FUSED_DTYPES,
    STRUCTURES,
    _auto_structure,
    _check_hyper,
)
from grownet.optim.coupling import CoupledUpdate
from grownet.optim.readout import SupportReadout


class DessiLBI(CoupledUpdate, SupportReadout, torch.optim.Optimizer):
    r"""Deep structurally splitting linearized Bregman iteration (DessiLBI).

    One step, per parameter ``p`` with gradient ``g`` (``a`` = ``lr``; parameters
    whose ``grad`` is ``None`` are skipped, their ``V`` included)::

        buf = g                               on the first step (momentum m > 0)
        buf = m*buf + (1 - dampening)*g       afterwards
        buf += wd*p        (only if p.ndim != 1 and "bn" not in its name)
        d   = buf          (Nesterov: d = g + wd*p + m*buf; no momentum: d = g + wd*p)
        coupled p:  V += (a/nu)*(p - Γ)                 # W_k and Γ_k
                    p -= a*kappa*d + (a*kappa/nu)*(p - Γ)
                    Γ  = kappa*Prox_lam(V)              # group or element soft threshold
        plain p:    p -= a*kappa*d

    ``Prox`` is the group soft threshold ``V_g * (1 - lam/||V_g||)_+`` over dim 0
    (one conv filter ``W[o]`` or one linear neuron ``W[o, :]``) for
    ``structure="filter"``, and the elementwise ``sign(V) * (|V| - lam)_+`` for
    ``structure="element"``. Only 2-D and 4-D coupled tensors update ``Γ``; others
    keep ``Γ = 0``. With ``dampening = 0`` the momentum rule equals
    ``torch.optim.SGD``'s (weight decay before the momentum update).

    Parameters
    ----------
    params
        Tensors, ``(name, tensor)`` pairs, or parameter-group dicts. A group's
        ``structure`` is ``"filter"``, ``"element"`` or ``"none"``; a group without
        one (and plain tensors) is split per tensor: 4-D filter-wise, 2-D
        element-wise, others plain (the reference behaviour). A group may carry
        ``names``, a list of parameter names parallel to ``params``; the support
        tracker uses them as layer names, and names containing ``"bn"`` get no
        weight decay. Use :func:`lbi_param_groups` for a model.
    lr
        Step size ``a``. Weights and plain parameters move with ``a * kappa``.
    kappa
        Scale of ``Γ`` (``Γ = kappa * Prox(V)``) and of the weight step.
    nu
        Coupling strength ``ν`` (reference code: ``mu``). ``V`` integrates
        ``(a/ν)(W - Γ)``, so a group of norm ``||W_g||`` enters the support after
        about ``lam * nu / (a * ||W_g||)`` steps; see :func:`nu_for_entry`.
    lam
        Sparsity threshold ``λ`` of the prox (the reference hard-codes 1).
    momentum, dampening, nesterov, weight_decay
        As in :class:`torch.optim.SGD`.
    freeze
        Freeze mode (ALGORITHMS A8) for every group; also a per-group key and a
        keyword of :meth:`step`. Groups of coupled tensors that are in the
        support of ``Γ`` (a filter/neuron row for ``"filter"``, an element for
        ``"element"``) keep ``W``, ``V`` and ``Γ`` unchanged; momentum still
        updates. Unlike the reference, element-wise layers are frozen element by
        element (the reference never freezes 2-D weights).

    Notes
    -----
    Per-tensor state is ``momentum_buffer`` (when ``momentum > 0``), ``V`` and
    ``gamma`` (coupled tensors only), all shaped like the parameter and created
    at the tensor's first step. The step runs multi-tensor ``torch._foreach_*``
    kernels per (device, dtype) and never synchronises with the device.
    """

    #: Use torch's fused SGD kernel where it computes the same update (tests turn it off).
    _use_fused: bool = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        kappa: float = 1.0,
        nu: float = 100.0,
        lam: float = 1.0,
        momentum: float = 0.9,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        freeze: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "kappa": kappa,
            "nu": nu,
            "lam": lam,
            "momentum": momentum,
            "dampening": dampening,
            "nesterov": nesterov,
            "weight_decay": weight_decay,
            "freeze": freeze,
        }
        _check_hyper(defaults, where="DessiLBI")
        self._row_scale: dict[Tensor, Tensor] = {}
        # Reused flat buffers for the filter prox scales (scratch, not state).
        self._scale_bufs: dict[tuple, tuple[Tensor, list[Tensor]]] = {}
        super().__init__(params, defaults)

    @classmethod
    def for_model(
        cls,
        model: torch.nn.Module,
        steps_per_epoch: int,
        *,
        lr: float = 0.05,
        entry_epochs: float = 3.0,
        nu: float = 100.0,
        lam: float | None = None,
        pace: str = "unit",
        hidden_linear: str = "filter",
        path_lr: float | None = None,
        **kwargs: Any,
    ) -> DessiLBI:
        """A DessiLBI for ``model`` with growth's groups and its λ paced to the data.

        The defaults are ``grownet grow``'s: ``lr`` 0.05, ``nu`` 100, momentum 0.9, and
        one λ chosen so that a filter of norm 1 enters Γ's support after
        ``entry_epochs`` epochs of ``steps_per_epoch`` steps
        (:func:`~grownet.optim.lam_for_entry`); pass ``lam`` to fix it instead. Groups:
        :func:`~grownet.optim.lbi_param_groups`.

        Parameters
        ----------
        pace
            ``"unit"``: one λ, for a filter of norm 1 (above). ``"layer"``: one group
            and one λ per coupled layer, so that a typical filter of *that* layer (the
            median of its initial norms) enters after ``entry_epochs``
            (:func:`~grownet.optim.layer_lams`); call it on the freshly initialised model.
        hidden_linear
            ``"filter"`` (neuron-wise groups) or ``"element"`` for hidden linear layers.
        path_lr
            ``"layer"`` pacing: the sum of the step sizes until entry, when the lr is not
            constant (a schedule, a warm-up); default ``lr * entry_epochs *
            steps_per_epoch``.

        Examples
        --------
        >>> opt = DessiLBI.for_model(model, steps_per_epoch=len(train_loader))  # doctest: +SKIP
        """
        from grownet.optim.groups import lbi_param_groups
        from grownet.optim.pacing import lam_for_entry, layer_lams

        if pace not in ("unit", "layer"):
            raise UserError(f"DessiLBI.for_model: pace={pace!r} is invalid; use 'unit' or "
                            "'layer'")
        paced = lam is None
        if paced:
            # Paced for a filter of norm 1, not the init's typical norm: a wide net's small
            # init would otherwise get a tiny λ, and every filter would enter at once.
            # Per layer, this is the defaults' λ, never used by a coupled group.
            lam = lam_for_entry(entry_epochs, steps_per_epoch, lr, nu, typical_norm=1.0)
        if pace == "layer" and paced:
            groups = lbi_param_groups(model, hidden_linear, per_layer=True)
            reach = path_lr if path_lr is not None else lr * entry_epochs * steps_per_epoch
            layer_lams(groups, reach, nu)
            return cls(groups, lr=lr, nu=nu, lam=lam, **kwargs)
        return cls(lbi_param_groups(model, hidden_linear), lr=lr, nu=nu, lam=lam, **kwargs)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        # Scratch that pickling drops and loading invalidates.
        self._row_scale = {}
        self._scale_bufs = {}

    # -- parameter groups ---------------------------------------------------------

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group; a group without ``structure`` is split per tensor rank.

        Parameters
        ----------
        param_group
            ``{"params": [...], "structure": ..., "names": [...], <hyperparameters>}``.
        """
        if not isinstance(param_group, dict):
            raise UserError(
                f"DessiLBI: a parameter group must be a dict, got {type(param_group).__name__}; "
                "pass tensors, (name, tensor) pairs, or dicts with a 'params' list"
            )
        group = dict(param_group)
        params = group.get("params")
        if isinstance(params, Tensor):
            params = [params]
        params = list(params) if params is not None else []
        names = group.pop("names", None)
        if params and all(isinstance(q, tuple) and len(q) == 2 for q in params):
            names = [str(n) for n, _ in params]
            params = [q for _, q in params]
        if names is not None:
            names = [str(n) for n in names]
            if len(names) != len(params):
                raise UserError(
                    f"DessiLBI: a group has {len(params)} params but {len(names)} names; "
                    "'names' must list one name per tensor in 'params', in the same order"
                )
        structure = group.pop("structure", None)
        if structure is None:
            # Reference behaviour: split per tensor, keeping filter/element/none order.
            for st in STRUCTURES:
                idx = [i for i, p in enumerate(params) if _auto_structure(p) == st]
                if idx:
                    sub = dict(group, params=[params[i] for i in idx], structure=st)
                    if names is not None:
                        sub["names"] = [names[i] for i in idx]
                    self.add_param_group(sub)
            return
        if structure not in STRUCTURES:
            raise UserError(
                f"DessiLBI: unknown structure {structure!r}; use one of {', '.join(STRUCTURES)}"
            )
        group["params"] = params
        group["structure"] = structure
        if names is not None:
            group["names"] = names
        _check_hyper(self.defaults | group, where="DessiLBI parameter group")
        super().add_param_group(group)

    # -- the step -----------------------------------------------------------------

    @torch.no_grad()
    def step(
        self, closure: Callable[[], Any] | None = None, *, freeze: bool | None = None
    ) -> Any:
        """Take one DessiLBI step.

        Parameters
        ----------
        closure
            Optional callable that re-evaluates the model and returns the loss.
        freeze
            Override every group's ``freeze`` flag for this step (ALGORITHMS A8).

        Returns
        -------
        The closure's loss, or ``None``.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # Prox scales of this step's filter rows (> 0 iff the row is selected), read by
        # the support tracker's step hook; transient, not state.
        self._row_scale = {}
        for group in self.param_groups:
            self._step_group(group, group["freeze"] if freeze is None else freeze)
        return loss

    def _step_group(self, group: dict[str, Any], freeze: bool) -> None:
        names = group.get("names")
        wd = group["weight_decay"] != 0
        # (device, dtype) -> (params, grads, weight-decay flags)
        buckets: dict[tuple[torch.device, torch.dtype], tuple[list, list, list]] = {}
        for i, p in enumerate(group["params"]):
            g = p.grad
            if g is None:
                continue
            if g.is_sparse:
                raise UserError("DessiLBI does not support sparse gradients; use dense layers")
            b = buckets.get((p.device, p.dtype))
            if b is None:
                b = buckets[(p.device, p.dtype)] = ([], [], [])
            b[0].append(p)
            b[1].append(g)
            b[2].append(wd and p.ndim != 1 and (names is None or "bn" not in names[i]))
        a, kappa = group["lr"], group["kappa"]
        for ps, gs, wdf in buckets.values():
            if group["structure"] == "none":
                self._sgd(group, ps, gs, wdf, a * kappa)
            elif freeze:
                d = self._direction(group, ps, gs, wdf)
                for p, dp in zip(ps, d):
                    self._coupled_frozen(group, p, dp)
            else:
                self._coupled(group, ps, gs, wdf)

    def _fusable(self, group: dict[str, Any], p: Tensor, wdf: list[bool]) -> bool:
        """Whether torch's fused SGD kernel computes exactly the A3 momentum rule here."""
        return (
            self._use_fused
            and p.device.type in _FUSED_DEVICES
            and p.dtype in _FUSED_DTYPES
            # A3 adds the decay after dampening; torch before: equal only if dampening = 0.
            and (group["dampening"] == 0 or group["weight_decay"] == 0 or not any(wdf))
        )

    def _sgd(
        self, group: dict[str, Any], ps: list[Tensor], gs: list[Tensor], wdf: list[bool], lr: float
    ) -> None:
        """``p -= lr * d`` with the momentum/weight-decay direction ``d`` of A3."""
        if not self._fusable(group, ps[0], wdf):
            torch._foreach_add_(ps, self._direction(group, ps, gs, wdf), alpha=-lr)
            return
        m, wd = group["momentum"], group["weight_decay"]
        kw = {
            "momentum": m,
            "lr": lr,
            "dampening": group["dampening"],
            "nesterov": group["nesterov"],
            "maximize": False,
        }
        if m == 0:
            bufs: list[Tensor | None] = [None] * len(ps)
        else:
            state = self.state
            bufs = [state[p].get("momentum_buffer") for p in ps]
            if not any(b is None for b in bufs) and (all(wdf) or not any(wdf)):
                # The usual case: one call.
                torch._fused_sgd_(ps, gs, bufs, weight_decay=wd if wdf[0] else 0.0,
                                  is_first_step=False, **kw)  # fmt: skip
                return
        # One fused call per (first step?, weight decay?) combination.
        calls: dict[tuple[bool, bool], tuple[list, list, list]] = {}
        for p, g, buf, f in zip(ps, gs, bufs, wdf):
            first = m != 0 and buf is None
            if first:
                buf = self.state[p]["momentum_buffer"] = torch.empty_like(
                    p, memory_format=torch.preserve_format
                )
            c = calls.get((first, f))
            if c is None:
                c = calls[(first, f)] = ([], [], [])
            c[0].append(p)
            c[1].append(g)
            if buf is not None:
                c[2].append(buf)
        for (first, f), (cp, cg, cb) in calls.items():
            torch._fused_sgd_(cp, cg, cb, weight_decay=wd if f else 0.0, is_first_step=first, **kw)

    def _direction(
        self, group: dict[str, Any], ps: list[Tensor], gs: list[Tensor], wdf: list[bool]
    ) -> list[Tensor]:
        """Momentum and weight decay (A3), unfused: the descent direction ``d`` per tensor."""
        m, dmp, wd = group["momentum"], group["dampening"], group["weight_decay"]
        use_wd = wd != 0 and any(wdf)
        if m == 0:
            if not use_wd:
                return gs
            # New tensors: the user's .grad is never modified.
            d = list(gs)
            for j, (p, g, f) in enumerate(zip(ps, gs, wdf)):
                if f:
                    d[j] = torch.add(g, p, alpha=wd)
            return d
        bufs: list[Tensor] = []
        for p, g in zip(ps, gs):
            st = self.state[p]
            buf = st.get("momentum_buffer")
            if buf is None:
                buf = st["momentum_buffer"] = torch.clone(g).detach()
            elif dmp == 0:
                torch.add(g, buf, alpha=m, out=buf)  # one pass: buf = m*buf + g
            else:
                buf.mul_(m).add_(g, alpha=1 - dmp)
            bufs.append(buf)
        if use_wd:
            # In place after the momentum update: the decay lands in the buffer (A3).
            torch._foreach_add_(
                [b for b, f in zip(bufs, wdf) if f], [p for p, f in zip(ps, wdf) if f], alpha=wd
            )
        if not group["nesterov"]:
            return bufs
        # torch.optim.SGD's Nesterov form: d = (g + wd*p) + m*buf.
        d = torch._foreach_add(gs, bufs, alpha=m)
        if use_wd:
            torch._foreach_add_(
                [x for x, f in zip(d, wdf) if f], [p for p, f in zip(ps, wdf) if f], alpha=wd
            )
        return d

    # -- reading Γ ----------------------------------------------------------------
