"""The support tracker itself (see :mod:`grownet.path` for what it follows and when)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from grownet.errors import UserError
from grownet.optim import DessiLBI
from grownet.path.census import GrowthReadout
from grownet.path.layout import LayerSlot, layer_name, view
from grownet.path.readers import HistoryReadout

_STATE_VERSION = 2


class SupportTracker(GrowthReadout, HistoryReadout):
    """Γ's support per layer of a :class:`~grownet.optim.DessiLBI` run, kept on the device.

    Layers are the optimizer's coupled parameters (groups with ``structure``
    ``"filter"`` or ``"element"``), named by the group's ``names`` with a trailing
    ``".weight"`` removed, or ``param{i}`` (``i`` = the parameter's index in the
    optimizer) when the group has no names.

    Parameters
    ----------
    opt
        The optimizer to follow. Create the tracker after moving the model to its
        device; a step post-hook is registered on ``opt`` (see :meth:`close`).

    Notes
    -----
    * Entry step of a group: the number of optimizer steps (counted by this
      tracker, starting at 0) after which Γ of the group was first nonzero;
      ``-1`` = never. Groups already selected when the tracker is created get 0.
    * Entry epoch: the ``epoch`` of the first :meth:`end_epoch` call at or after
      the entry step, i.e. the epoch during which the group entered; ``-1`` = never.
    * Selection ratio: selected rows / rows for filter layers, nonzero elements /
      elements for element layers (the reference's counting bugs, ALGORITHMS A6, are
      not reproduced).
    """

    def __init__(self, opt: DessiLBI) -> None:
        self._opt: DessiLBI | None = None
        self._hook: Any = None
        self._step = 0
        self._history: list[dict[str, Any]] = []
        self._bind(opt, self._layout(opt))
        self._entry_step = torch.full((self._total,), -1, dtype=torch.long, device=self._device)
        self._entry_epoch = torch.full_like(self._entry_step, -1)
        self._birth = torch.zeros_like(self._entry_step)  # first epoch each group trained
        self._refresh(stamp=True)

    # -- binding to an optimizer ------------------------------------------------------

    @staticmethod
    def _layout(opt: DessiLBI) -> list[LayerSlot]:
        """The coupled layers of ``opt`` and their places in the flat vectors."""
        if not isinstance(opt, torch.optim.Optimizer) or not hasattr(opt, "gamma"):
            raise UserError(
                f"SupportTracker needs a DessiLBI optimizer, got {type(opt).__name__}; "
                "build one with grownet.DessiLBI(grownet.lbi_param_groups(model), lr=...)"
            )
        layers: list[LayerSlot] = []
        offset = 0
        index = 0
        seen: set[str] = set()
        for group in opt.param_groups:
            names = group.get("names")
            for i, p in enumerate(group["params"]):
                index += 1
                if group["structure"] == "none" or p.ndim == 0:
                    continue
                full = names[i] if names is not None else f"param{index - 1}"
                name = layer_name(full)
                if name in seen:
                    name = full
                if name in seen:
                    raise UserError(
                        f"SupportTracker: two coupled parameters are both named {full!r}; "
                        "give every parameter a unique name in the groups' 'names'"
                    )
                seen.add(name)
                shape = (p.shape[0],) if group["structure"] == "filter" else tuple(p.shape)
                n = 1
                for s in shape:
                    n *= s
                layers.append(LayerSlot(name, p, group["structure"], shape, offset, n))
                offset += n
        if not layers:
            raise UserError(
                "SupportTracker: the optimizer has no coupled parameters (every group has "
                "structure='none'); build its groups with grownet.lbi_param_groups(model)"
            )
        devices = {lay.param.device for lay in layers}
        if len(devices) > 1:
            raise UserError(
                f"SupportTracker: coupled parameters live on several devices ({devices}); "
                "move the model to one device before creating the tracker"
            )
        return layers

    def _bind(self, opt: DessiLBI, layers: list[LayerSlot]) -> None:
        if self._hook is not None:
            self._hook.remove()
        self._opt = opt
        self._layers = layers
        self._by_name = {lay.name: lay for lay in layers}
        self._total = layers[-1].offset + layers[-1].numel
        self._device = layers[0].param.device
        self._support = torch.zeros(self._total, dtype=torch.bool, device=self._device)
        self._make_views()
        self._hook = opt.register_step_post_hook(self._on_step)

    def close(self) -> None:
        """Remove the step hook; the tracker keeps what it recorded."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def rebind(self, opt: DessiLBI, keep: dict[str, Tensor] | None = None) -> None:
        """Follow a new optimizer (after growth), carrying entry steps and epochs.

        Parameters
        ----------
        opt
            The new optimizer. Its layers are matched to the old ones by name.
        keep
            ``{layer: LongTensor}``: for a layer, the old row indices that the new
            rows ``0..len-1`` continue, in new order, ``-1`` for a new row (the form of
            :attr:`grownet.surgery.Change.out_maps`). Layers not listed keep their
            leading rows (``new[:n] = old[:n]``), as width surgery copies weights
            into leading slices. For element layers trailing dimensions are matched
            by leading slice too. Groups without an old counterpart start at ``-1``.

        Notes
        -----
        The step counter and the epoch history carry over. The current support
        is re-read from the new optimizer's Γ (zeros for a fresh optimizer).
        """
        old_layers = self._by_name
        layers = self._layout(opt)
        keep = dict(keep or {})
        unknown = sorted(k for k in keep if k not in old_layers)
        if unknown:
            raise UserError(
                f"SupportTracker.rebind: keep names unknown layers {unknown}; "
                f"use names from tracker.layers: {sorted(old_layers)}"
            )
        device = layers[0].param.device
        total = layers[-1].offset + layers[-1].numel
        # new groups: no entry yet, born at the next epoch to train
        fills = (-1, -1, self._next_epoch)
        olds = (self._entry_step, self._entry_epoch, self._birth)
        news = [torch.full((total,), f, dtype=torch.long, device=device) for f in fills]
        for lay in layers:
            old = old_layers.get(lay.name)
            if old is None or len(old.shape) != len(lay.shape):
                continue  # a new layer (or one whose structure changed): all groups new
            srcs = [view(v, old).to(device) for v in olds]
            idx = keep.get(lay.name)
            if idx is not None:
                idx = torch.as_tensor(idx).to(device)
                if idx.numel() == 0:
                    idx = idx.long()  # torch.tensor(()) is a float tensor
                ok = (
                    idx.ndim == 1
                    and not idx.is_floating_point()
                    and idx.numel() <= lay.shape[0]
                    and bool(((idx >= -1) & (idx < old.shape[0])).all())  # a host sync, once
                )
                if not ok:
                    raise UserError(
                        f"SupportTracker.rebind: keep[{lay.name!r}] must be a 1-D integer "
                        f"index into the {old.shape[0]} old rows (-1 for a new row) with at "
                        f"most {lay.shape[0]} entries (the new layer's rows)"
                    )
                # -1 marks a row that growth created: no entry yet, born now
                new_row = (idx < 0).view((-1,) + (1,) * (srcs[0].ndim - 1))
                srcs = [src.index_select(0, idx.long().clamp(min=0)).masked_fill(new_row, f)
                        for src, f in zip(srcs, fills)]
            common = tuple(slice(0, min(a, b)) for a, b in zip(srcs[0].shape, lay.shape))
            for new, src in zip(news, srcs):
                view(new, lay)[common] = src[common]
        self._bind(opt, layers)
        self._entry_step, self._entry_epoch, self._birth = news
        self._refresh(stamp=False)

    @property
    def _next_epoch(self) -> int:
        """The epoch that trains next: one after the last :meth:`end_epoch`."""
        return self._history[-1]["epoch"] + 1 if self._history else 0

    def follow(self, event: Any) -> None:
        """Follow a growth step: bind to ``event.optimizer``, carrying every entry step,
        entry epoch and the epoch history through ``event.change``'s channel maps
        (a :class:`~grownet.grow.GrowthEvent` of kind ``"grow"``; other events are
        ignored)."""
        change = getattr(event, "change", None)
        if getattr(event, "kind", None) != "grow" or change is None:
            return
        self.rebind(event.optimizer, keep={
            k: torch.tensor(v, dtype=torch.long) for k, v in change.out_maps.items()
            if k in self._by_name})

    # -- per-step update ----------------------------------------------------------

    def _on_step(self, opt: Any, args: Any, kwargs: Any) -> None:
        self._step += 1
        self._refresh(stamp=True, after_step=True)

    def _make_views(self) -> None:
        """Per-layer views of the flat support: flat, and shaped like the prox scales."""
        self._views = [self._support[lay.offset : lay.offset + lay.numel] for lay in self._layers]
        self._scale_views = [
            v.view((-1,) + (1,) * (lay.param.ndim - 1)) if lay.structure == "filter" else None
            for v, lay in zip(self._views, self._layers)
        ]

    def _refresh(self, stamp: bool, after_step: bool = False) -> None:
        """Re-read the support from Γ into the flat vector (no host sync).

        Right after a step the optimizer's prox scales give filter rows for free
        (``scale > 0`` iff ``Γ[o] != 0``); otherwise Γ itself is read.
        """
        assert self._opt is not None
        if self._layers[0].param.device != self._device:  # the model moved after creation
            self._to(self._layers[0].param.device)
        state = self._opt.state
        scales = self._opt.row_scales() if after_step and hasattr(self._opt, "row_scales") \
            else {}
        for lay, out, sout in zip(self._layers, self._views, self._scale_views):
            if sout is not None:
                sc = scales.get(lay.param)
                if sc is not None:
                    torch.gt(sc, 0, out=sout)
                    continue
            st = state.get(lay.param)
            gam = st.get("gamma") if st is not None else None
            if gam is None:
                out.zero_()
            elif sout is not None and gam.ndim > 1:
                torch.gt(gam.flatten(1).abs().amax(1), 0, out=out)
            else:
                out.copy_(gam.flatten())  # float -> bool: nonzero is True
        if stamp:
            newly = self._support & (self._entry_step < 0)
            self._entry_step.masked_fill_(newly, self._step)

    def _to(self, device: torch.device) -> None:
        self._device = device
        self._support = self._support.to(device)
        self._entry_step = self._entry_step.to(device)
        self._entry_epoch = self._entry_epoch.to(device)
        self._birth = self._birth.to(device)
        self._make_views()

    # -- epochs ---------------------------------------------------------------------

    def end_epoch(self, epoch: int) -> None:
        """Stamp entry epochs and record the support at the end of ``epoch``.

        Call it once after each epoch (any integer numbering; 0-based like the
        reference). Groups that entered since the previous call get entry epoch
        ``epoch``; the current support of every layer is stored for
        :meth:`support_at` and :meth:`history`. No host synchronisation.
        """
        self._refresh(stamp=True)
        newly = (self._entry_step >= 0) & (self._entry_epoch < 0)
        self._entry_epoch.masked_fill_(newly, int(epoch))
        self._history.append(
            {
                "step": self._step,
                "epoch": int(epoch),
                "layers": [lay.name for lay in self._layers],
                "shapes": [list(lay.shape) for lay in self._layers],
                "support": self._support.clone(),
            }
        )

    # -- reading --------------------------------------------------------------------

    @property
    def layers(self) -> list[str]:
        """Layer names, in optimizer order."""
        return [lay.name for lay in self._layers]

    @property
    def steps(self) -> int:
        """Optimizer steps seen by this tracker."""
        return self._step

    def _layer(self, layer: str) -> LayerSlot:
        lay = self._by_name.get(layer)
        if lay is None:
            raise UserError(
                f"SupportTracker: no layer named {layer!r}; known layers: {self.layers}"
            )
        return lay

    def support(self, layer: str | None = None) -> Tensor | dict[str, Tensor]:
        """Current support: a bool tensor for ``layer``, or ``{layer: tensor}`` for all.

        Shape ``(out,)`` for filter layers, the weight's shape for element layers.
        """
        self._refresh(stamp=True)
        if layer is not None:
            return view(self._support, self._layer(layer)).clone()
        return {lay.name: view(self._support, lay).clone() for lay in self._layers}

    def entry_steps(self, layer: str) -> Tensor:
        """Entry step per group of ``layer`` (``-1`` = never), on the device."""
        return view(self._entry_step, self._layer(layer)).clone()

    def entry_epochs(self, layer: str) -> Tensor:
        """Entry epoch per group of ``layer`` (``-1`` = never), on the device."""
        return view(self._entry_epoch, self._layer(layer)).clone()

    def birth_epochs(self, layer: str) -> Tensor:
        """The first epoch each group of ``layer`` trained in (0 for the start's)."""
        return view(self._birth, self._layer(layer)).clone()

    def ratios(self) -> dict[str, float]:
        """Current selection ratio per layer, as host floats (one device sync)."""
        self._refresh(stamp=True)
        sup = self._support
        counts = torch.stack(
            [sup[lay.offset : lay.offset + lay.numel].sum() for lay in self._layers]
        ).tolist()
        return {lay.name: c / lay.numel for lay, c in zip(self._layers, counts)}
    # -- checkpoints ------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Tensors and primitives only (``torch.load(weights_only=True)`` reads it back)."""
        return {
            "version": _STATE_VERSION,
            "step": self._step,
            "layers": self.layers,
            "shapes": [list(lay.shape) for lay in self._layers],
            "entry_step": self._entry_step.clone(),
            "entry_epoch": self._entry_epoch.clone(),
            "birth_epoch": self._birth.clone(),
            "history": [dict(rec, support=rec["support"].clone()) for rec in self._history],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved, for the same layers and shapes."""
        if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
            raise UserError(
                "SupportTracker.load_state_dict: not a tracker state (version "
                f"{_STATE_VERSION} expected); pass what tracker.state_dict() returned"
            )
        shapes = [list(lay.shape) for lay in self._layers]
        if state["layers"] != self.layers or [list(s) for s in state["shapes"]] != shapes:
            raise UserError(
                "SupportTracker.load_state_dict: the saved layers/shapes differ from this "
                "optimizer's; restore the model and optimizer of the same stage first "
                "(use rebind() to carry entries across growth)"
            )
        self._step = int(state["step"])
        self._entry_step = state["entry_step"].to(self._device, torch.long).clone()
        self._entry_epoch = state["entry_epoch"].to(self._device, torch.long).clone()
        self._birth = state["birth_epoch"].to(self._device, torch.long).clone()
        self._history = [
            dict(rec, support=rec["support"].to(self._device, torch.bool).clone())
            for rec in state["history"]
        ]
        self._refresh(stamp=False)
