"""One small object per training method (SGD, DessiLBI, DST): how a job builds the
model, optimises it, regularises it, logs it per epoch and finishes it.

The job (:mod:`grownet.train.job`) is the same for every method; what differs lives
here, so a method is read (or added) in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from grownet import dst
from grownet.cost import count
from grownet.optim import DessiLBI
from grownet.path import SupportTracker
from grownet.runs import RunConfig
from grownet.spec import ArchSpec


@dataclass
class EpochLog:
    """What a method reports after an epoch: ``metrics.csv`` columns, rows for its own
    per-layer table, and the per-layer ratios behind them."""

    columns: dict[str, float]
    table: str | None = None  # "support.csv" | "keep.csv"
    rows: list[dict[str, Any]] = field(default_factory=list)
    ratios: dict[str, float] = field(default_factory=dict)


@dataclass
class Finish:
    """A method's last change to the net (DST: fully masked filters removed)."""

    spec: ArchSpec
    model: nn.Module
    event: dict[str, Any]
    message: str


class SGD:
    """Plain SGD with momentum: the baseline every method is compared with."""

    name = "sgd"
    #: how :func:`grownet.build` initialises a fresh net for this method
    init = "kaiming"

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg

    def prepare(self, model: nn.Module) -> nn.Module:
        """The model this method trains (DST swaps in masked layers)."""
        return model

    def optimizer(self, model: nn.Module, steps_per_epoch: int, lam: float
                  ) -> torch.optim.Optimizer:
        cfg = self.cfg
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)

    def lam(self, steps_per_epoch: int) -> float:
        """DessiLBI's λ for this run (0: the method has none)."""
        return 0.0

    def tracker(self, optimizer: torch.optim.Optimizer) -> SupportTracker | None:
        return None

    def extra_loss(self) -> Callable[[nn.Module], torch.Tensor] | None:
        return None

    def epoch_log(self, model: nn.Module, spec: ArchSpec, tracker: SupportTracker | None,
                  stage: int, epoch: int) -> EpochLog:
        return EpochLog({"mean_ratio": 0.0, "sparsity": 0.0})

    def finish(self, spec: ArchSpec, model: nn.Module, epoch: int) -> Finish | None:
        return None


class LBI(SGD):
    """DessiLBI: Γ's support per layer is tracked and logged to ``support.csv``."""

    name = "dessilbi"

    def lam(self, steps_per_epoch: int) -> float:
        cfg = self.cfg
        if cfg.lam:
            return cfg.lam
        # λ paced from the data (DessiLBI.for_model's rule, the Python API's default)
        from grownet.optim import lam_for_entry

        return lam_for_entry(cfg.entry_epochs, steps_per_epoch, cfg.lr, cfg.nu)

    def optimizer(self, model: nn.Module, steps_per_epoch: int, lam: float
                  ) -> torch.optim.Optimizer:
        cfg = self.cfg
        return DessiLBI.for_model(model, steps_per_epoch, lr=cfg.lr, nu=cfg.nu, lam=lam,
                                  kappa=cfg.kappa, momentum=cfg.momentum,
                                  weight_decay=cfg.weight_decay)

    def tracker(self, optimizer: torch.optim.Optimizer) -> SupportTracker | None:
        return SupportTracker(optimizer)

    def epoch_log(self, model: nn.Module, spec: ArchSpec, tracker: SupportTracker | None,
                  stage: int, epoch: int) -> EpochLog:
        ratios = tracker.ratios() if tracker is not None else {}
        widths = spec.widths()
        rows = [{"stage": stage, "epoch": epoch, "layer": layer, "width": widths[layer],
                 "selected": round(ratio * widths[layer]), "ratio": round(ratio, 6)}
                for layer, ratio in ratios.items()]
        mean = sum(ratios.values()) / len(ratios) if ratios else 0.0
        return EpochLog({"mean_ratio": mean, "sparsity": 0.0}, "support.csv", rows, ratios)


class DST(SGD):
    """Dynamic Sparse Training (ALGORITHMS.md Part B): masked layers whose thresholds
    train with the weights in plain SGD; the keep ratios go to ``keep.csv``."""

    name = "dst"
    # DST's thresholds start at 0 against PyTorch's default init (ALGORITHMS B4); the
    # growth example's N(0, 0.01) linears would be masked away at once.
    init = "default"

    def prepare(self, model: nn.Module) -> nn.Module:
        return dst.convert(model)

    def extra_loss(self) -> Callable[[nn.Module], torch.Tensor] | None:
        alpha = self.cfg.alpha
        return lambda model: dst.sparsity_loss(model, alpha)

    def epoch_log(self, model: nn.Module, spec: ArchSpec, tracker: SupportTracker | None,
                  stage: int, epoch: int) -> EpochLog:
        keep = dst.keep_ratios(model)
        rows = [{"epoch": epoch, "layer": layer, "keep_ratio": round(ratio, 6)}
                for layer, ratio in keep.items()]
        mean = sum(keep.values()) / len(keep) if keep else 0.0
        return EpochLog({"mean_ratio": mean, "sparsity": dst.overall_sparsity(model)},
                        "keep.csv", rows, keep)

    def finish(self, spec: ArchSpec, model: nn.Module, epoch: int) -> Finish | None:
        """Remove the filters DST masked entirely; report the unstructured sparsity that
        remains (which does not lower dense MACs)."""
        before = count(spec)
        sparsity = dst.overall_sparsity(model)
        new_spec, new_model = dst.slim_masked(spec, model.eval())
        after = count(new_spec)
        event = {"epoch": epoch, "kind": "dst-slim", "reason": "fully masked filters removed",
                 "before": {"params": before.params, "macs": before.macs},
                 "after": {"params": after.params, "macs": after.macs},
                 "unstructured_sparsity": round(sparsity, 6),
                 "widths": {k: [before[k].out_ch, v] for k, v in new_spec.widths().items()}}
        message = (f"DST: {sparsity * 100:.1f}% of masked weights are zero; removing fully "
                   f"masked filters: params {before.params:,} → {after.params:,}, MACs "
                   f"{before.macs:,} → {after.macs:,}. The remaining unstructured sparsity "
                   "does not lower dense MACs.")
        return Finish(new_spec, new_model, event, message)


METHODS: dict[str, type[SGD]] = {m.name: m for m in (SGD, LBI, DST)}


def method_for(cfg: RunConfig) -> SGD:
    """The method object of ``cfg.method`` (``grow`` always trains with DessiLBI)."""
    return METHODS["dessilbi" if cfg.command == "grow" else cfg.method](cfg)
