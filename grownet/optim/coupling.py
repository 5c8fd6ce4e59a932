"""The coupled half of a DessiLBI step (ALGORITHMS.md A3, A8): the pull of W towards Γ,
the V update, the prox that gives Γ, and freeze mode."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from grownet.optim.common import _PROX_NDIMS, _ROW_DIMS, _support


class CoupledUpdate:
    """Mixin for :class:`~grownet.optim.DessiLBI`: per-tensor ``V``/``Γ`` state and the
    coupled part of the update. Expects ``self.state`` (a ``torch.optim.Optimizer``)."""

    state: Any

    def _coupled_state(self, p: Tensor) -> tuple[Tensor, Tensor]:
        """``(V, Γ)`` of a coupled tensor, created as zeros at its first step."""
        st = self.state[p]
        v = st.get("V")
        if v is None:
            v = st["V"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            st["gamma"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return v, st["gamma"]

    def _coupled(
        self, group: dict[str, Any], ps: list[Tensor], gs: list[Tensor], wdf: list[bool]
    ) -> None:
        a, kappa, nu = group["lr"], group["kappa"], group["nu"]
        vs, gams = [], []
        for p in ps:
            v, gam = self._coupled_state(p)
            vs.append(v)
            gams.append(gam)
        # V += (a/nu)(W_k - Γ_k), as two in-place adds: no temporary.
        torch._foreach_add_(vs, ps, alpha=a / nu)
        torch._foreach_add_(vs, gams, alpha=-a / nu)
        # W -= a*kappa*d + w*(W - Γ), w = a*kappa/nu (the coupling is not momentum-filtered).
        w = a * kappa / nu
        if w < 0.5 and self._fusable(group, ps[0], wdf):
            # Fused momentum step first, with lr scaled so that the lerp towards Γ after it
            # gives exactly the A3 update: (1-w)*(W - a*kappa/(1-w)*d) + w*Γ.
            self._sgd(group, ps, gs, wdf, a * kappa / (1 - w))
            torch._foreach_lerp_(ps, gams, w)
        else:
            d = self._direction(group, ps, gs, wdf)
            torch._foreach_lerp_(ps, gams, w)
            torch._foreach_add_(ps, d, alpha=-a * kappa)
        keep = [i for i, p in enumerate(ps) if p.ndim in _PROX_NDIMS]
        if len(keep) < len(ps):
            ps, vs, gams = [ps[i] for i in keep], [vs[i] for i in keep], [gams[i] for i in keep]
        self._prox(group, ps, vs, gams)

    def _prox(
        self, group: dict[str, Any], ps: list[Tensor], vs: list[Tensor], gams: list[Tensor]
    ) -> None:
        """Γ = kappa * Prox_lam(V) for the given coupled (2-D/4-D) tensors, in place."""
        if not ps:
            return
        kappa, lam = group["kappa"], group["lam"]
        if group["structure"] == "element":
            for v, gam in zip(vs, gams):
                torch._C._nn.softshrink(v, lam, out=gam)
            if kappa != 1:
                torch._foreach_mul_(gams, kappa)
            return
        # Group soft threshold over dim 0: scale_o = kappa*(1 - lam/||V_o||)_+. The row
        # norms go into one flat buffer through (out, 1, ...) views, so the scale takes
        # four ops in all and broadcasts against V without reshaping.
        flat, views = self._scale_buffer(group, vs)
        for v, sv in zip(vs, views):
            torch.linalg.vector_norm(v, dim=_ROW_DIMS[v.ndim], keepdim=True, out=sv)
        if lam == 0:
            flat.fill_(kappa)  # no threshold: Γ = kappa*V
        else:
            # ||V_o|| = 0: 1/0 = inf -> kappa - inf -> clamped to 0, not NaN.
            flat.reciprocal_().mul_(-lam * kappa).add_(kappa).clamp_min_(0.0)
        row_scale = self._row_scale
        for p, v, gam, sv in zip(ps, vs, gams, views):
            torch.mul(v, sv, out=gam)
            row_scale[p] = sv

    def _scale_buffer(
        self, group: dict[str, Any], vs: list[Tensor]
    ) -> tuple[Tensor, list[Tensor]]:
        """A reusable flat vector for the row scales of ``vs``, with per-tensor views."""
        key = (id(group), vs[0].device, vs[0].dtype, tuple((v.shape[0], v.ndim) for v in vs))
        hit = self._scale_bufs.get(key)
        if hit is None:
            if len(self._scale_bufs) > 64:  # groups were rebuilt many times: start afresh
                self._scale_bufs.clear()
            flat = torch.empty(sum(v.shape[0] for v in vs), device=vs[0].device, dtype=vs[0].dtype)
            views, off = [], 0
            for v in vs:
                views.append(flat[off : off + v.shape[0]].view((-1,) + (1,) * (v.ndim - 1)))
                off += v.shape[0]
            hit = self._scale_bufs[key] = (flat, views)
        return hit

    def _coupled_frozen(self, group: dict[str, Any], p: Tensor, d: Tensor) -> None:
        """A8: groups in supp(Γ_k) keep W, V and Γ; the others take a normal step."""
        a, kappa, nu = group["lr"], group["kappa"], group["nu"]
        v, gam = self._coupled_state(p)
        sel = _support(gam, group["structure"])
        if sel.shape != p.shape:
            sel = sel.view((-1,) + (1,) * (p.ndim - 1))
        keep = (~sel).to(p.dtype)
        diff = p - gam
        v.addcmul_(diff, keep, value=a / nu)
        upd = torch.add(d, diff, alpha=1.0 / nu)
        p.addcmul_(upd, keep, value=-a * kappa)
        if p.ndim in _PROX_NDIMS:
            old = gam.clone()
            self._prox(group, [p], [v], [gam])
            torch.where(sel, old, gam, out=gam)
            self._row_scale.pop(p, None)  # Γ is not prox(V) on frozen rows: readers use Γ
