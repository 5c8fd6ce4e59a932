"""One small object per training method (SGD, DessiLBI, DST): how a job builds the
model, optimises it, regularises it, logs it per epoch and finishes it.

The job (:mod:`grownet.train.job`) is the same for every method; what differs lives
here, so a method is read (or added) in one place.

Every method logs ``keep`` in ``metrics.csv``: the share of the weights of its sparse
layers that are in use, weighted by their sizes (DST: kept by the masks over the
masked layers' weights; DessiLBI: in Γ's support over the coupled layers' weights;
SGD: 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from grownet import dst
from grownet.cost import count
from grownet.optim import DessiLBI
from grownet.path import SupportTracker
from grownet.runs import RunConfig, RunDir
from grownet.spec import ArchSpec
from grownet.train.schedule import lr_sum


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

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg

    @property
    def init(self) -> str:
        """How :func:`grownet.build` initialises a fresh net: ``cfg.init`` (auto:
        PyTorch's default for ``train``), the same for every method, so that methods are
        compared from the same start."""
        return self.cfg.initialisation

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
        return EpochLog({"mean_ratio": 0.0, "keep": 1.0, "sparsity": 0.0})

    def epoch_end(self, run: RunDir, row: dict[str, Any], spec: ArchSpec,
                  model: nn.Module) -> None:
        """After the epoch's ``metrics.csv`` row is written (DST keeps its best and
        sparsest models here)."""

    def finish(self, spec: ArchSpec, model: nn.Module, epoch: int) -> Finish | None:
        return None

    def state_dict(self) -> dict[str, Any]:
        """What the method needs to resume (primitives), saved in the job's checkpoint."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class LBI(SGD):
    """DessiLBI: Γ's support per layer is tracked and logged to ``support.csv``.

    λ is paced (unless ``cfg.lam`` fixes it) per ``cfg.lam_pacing``. ``"layer"`` gives
    every coupled layer its own λ, so that a typical filter of that layer (the median
    norm) enters Γ's support after ``cfg.entry_epochs`` under the run's lr schedule
    (:func:`grownet.optim.layer_lams`): from the initial norms at the start, then again
    after every epoch from the norms of that time, until the layer's first filter has
    entered. Weights grow fast while a net starts to learn (vgg16-narrow's convs by up
    to 1.6x in three epochs, its first conv not at all), and paced once from the
    initial norms, the layers that grow would enter long before the ones that do not.
    ``"unit"`` (growth) is one λ for a filter of norm 1.
    """

    name = "dessilbi"

    def __init__(self, cfg: RunConfig) -> None:
        super().__init__(cfg)
        self._opt: DessiLBI | None = None
        self._tracker: SupportTracker | None = None
        self._started: set[str] = set()  # layers with a filter in the support
        self._path_lr = 0.0

    @property
    def paced_per_layer(self) -> bool:
        return self.cfg.lam_pacing == "layer" and not self.cfg.lam

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
        hidden = "filter" if cfg.hidden_linear == "neuron" else "element"
        common = {"lr": cfg.lr, "nu": cfg.nu, "kappa": cfg.kappa, "momentum": cfg.momentum,
                  "weight_decay": cfg.weight_decay, "hidden_linear": hidden}
        if self.paced_per_layer:
            # a resumed run gets its groups' λ back from the optimizer's state
            self._path_lr = lr_sum(cfg, steps_per_epoch, cfg.entry_epochs)
            self._opt = DessiLBI.for_model(model, steps_per_epoch, pace="layer",
                                           path_lr=self._path_lr,
                                           entry_epochs=cfg.entry_epochs, **common)
            return self._opt
        return DessiLBI.for_model(model, steps_per_epoch, lam=lam, **common)

    def epoch_end(self, run: RunDir, row: dict[str, Any], spec: ArchSpec,
                  model: nn.Module) -> None:
        """Re-pace the λ of the layers none of whose filters has entered yet."""
        if not self.paced_per_layer or self._opt is None or self._tracker is None:
            return
        from grownet.optim import layer_lams

        tracker = self._tracker
        # a layer once started stays started: only the others are read (a sync each)
        self._started |= {f"{layer}.weight" for layer in tracker.layers
                          if f"{layer}.weight" not in self._started
                          and bool((tracker.entry_steps(layer) >= 0).any())}
        if len(self._started) < len(tracker.layers):
            layer_lams(self._opt.param_groups, self._path_lr, self.cfg.nu,
                       skip=self._started)

    def tracker(self, optimizer: torch.optim.Optimizer) -> SupportTracker | None:
        self._tracker = SupportTracker(optimizer)
        return self._tracker

    def epoch_log(self, model: nn.Module, spec: ArchSpec, tracker: SupportTracker | None,
                  stage: int, epoch: int) -> EpochLog:
        ratios = tracker.ratios() if tracker is not None else {}
        widths = spec.widths()
        rows = [{"stage": stage, "epoch": epoch, "layer": layer, "width": widths[layer],
                 "selected": round(ratio * widths[layer]), "ratio": round(ratio, 6)}
                for layer, ratio in ratios.items()]
        mean = sum(ratios.values()) / len(ratios) if ratios else 0.0
        # a layer's ratio is of rows (filter) or elements: either way, of its weights
        sizes = {s.id: math.prod(s.weight_shape) for s in spec.shapes() if s.id in ratios}
        total = sum(sizes.values())
        keep = sum(ratios[k] * n for k, n in sizes.items()) / total if total else 1.0
        return EpochLog({"mean_ratio": mean, "keep": keep, "sparsity": 0.0}, "support.csv",
                        rows, ratios)


class DST(SGD):
    """Dynamic Sparse Training (ALGORITHMS.md Part B): masked layers whose thresholds
    train with the weights in plain SGD; the keep ratios go to ``keep.csv``.

    With ``cfg.keep`` > 0, α is steered so that the keep ratio of the masked layers
    follows a schedule down to ``cfg.keep`` (:class:`grownet.dst.KeepPacer`); otherwise
    α is ``cfg.alpha``, fixed (the paper's). The most accurate model (validation
    accuracy, else training accuracy) and the most accurate of the sparsest ones (keep
    within :data:`grownet.dst.SPARSEST_TOLERANCE` of the lowest seen) are kept in
    ``RUN/best/`` and ``RUN/sparsest/``, masks baked in.
    """

    name = "dst"

    def __init__(self, cfg: RunConfig) -> None:
        super().__init__(cfg)
        self.pacer: dst.KeepPacer | None = None
        self.keeper = dst.BestKeeper()

    def prepare(self, model: nn.Module) -> nn.Module:
        return dst.convert(model)

    def optimizer(self, model: nn.Module, steps_per_epoch: int, lam: float
                  ) -> torch.optim.Optimizer:
        cfg = self.cfg
        if cfg.keep:
            self.pacer = dst.KeepPacer(model, cfg.keep, steps_per_epoch * cfg.epochs,
                                       lr=cfg.lr, momentum=cfg.momentum)
        return super().optimizer(model, steps_per_epoch, lam)

    def extra_loss(self) -> Callable[[nn.Module], torch.Tensor] | None:
        if self.pacer is not None:
            return self.pacer
        alpha = self.cfg.alpha
        return lambda model: dst.sparsity_loss(model, alpha)

    def epoch_log(self, model: nn.Module, spec: ArchSpec, tracker: SupportTracker | None,
                  stage: int, epoch: int) -> EpochLog:
        counts = dst.kept_counts(model)
        keep = dst.weighted_keep_of(counts)
        rows = [{"epoch": epoch, "layer": layer, "keep_ratio": round(kept / total, 6),
                 "kept": kept, "weights": total} for layer, (kept, total) in counts.items()]
        columns = {"mean_ratio": 0.0, "keep": keep, "sparsity": 1.0 - keep}
        if self.pacer is not None:
            columns |= {"alpha": float(self.pacer.alpha), "keep_target": self.pacer.target()}
        else:
            columns["alpha"] = self.cfg.alpha
        ratios = {layer: kept / total for layer, (kept, total) in counts.items()}
        return EpochLog(columns, "keep.csv", rows, ratios)

    def epoch_end(self, run: RunDir, row: dict[str, Any], spec: ArchSpec,
                  model: nn.Module) -> None:
        self.keeper.update(run, row, spec, model)

    def finish(self, spec: ArchSpec, model: nn.Module, epoch: int) -> Finish | None:
        """Remove the filters DST masked entirely; report the share of masked weights
        kept, which (being unstructured) does not lower dense MACs."""
        before = count(spec)
        counts = dst.kept_counts(model)
        keep = dst.weighted_keep_of(counts)
        kept = sum(k for k, _ in counts.values())
        total = sum(t for _, t in counts.values())
        new_spec, new_model = dst.slim_masked(spec, model.eval())
        after = count(new_spec)
        event = {"epoch": epoch, "kind": "dst-slim", "reason": "fully masked filters removed",
                 "before": {"params": before.params, "macs": before.macs},
                 "after": {"params": after.params, "macs": after.macs},
                 "keep": round(keep, 6), "kept_weights": kept, "masked_weights": total,
                 "unstructured_sparsity": round(1.0 - keep, 6),
                 "widths": {k: [before[k].out_ch, v] for k, v in new_spec.widths().items()}}
        message = (f"DST: the masks keep {kept:,} of the masked layers' {total:,} weights "
                   f"(keep {keep * 100:.2f}%); removing fully masked filters: params "
                   f"{before.params:,} → {after.params:,}, MACs {before.macs:,} → "
                   f"{after.macs:,}. The remaining unstructured sparsity does not lower "
                   "dense MACs.")
        return Finish(new_spec, new_model, event, message)

    def state_dict(self) -> dict[str, Any]:
        return {"pacer": self.pacer.state_dict() if self.pacer else {},
                "keeper": self.keeper.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.pacer is not None and state.get("pacer"):
            self.pacer.load_state_dict(state["pacer"])
        self.keeper.load_state_dict(state.get("keeper", {}))


METHODS: dict[str, type[SGD]] = {m.name: m for m in (SGD, LBI, DST)}


def method_for(cfg: RunConfig) -> SGD:
    """The method object of ``cfg.method`` (``grow`` always trains with DessiLBI)."""
    return METHODS["dessilbi" if cfg.command == "grow" else cfg.method](cfg)
