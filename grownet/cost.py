"""Compute cost of a network: parameters, MACs, latency and training compute.

Params and MACs are analytic, read from the spec's resolved shapes
(:meth:`ArchSpec.shapes`); no model is built. Conventions (the ones published CIFAR
tables use, so that ResNet-56 comes out at ~125 M MACs and VGG-16 at ~313 M):

* **params** of a layer = its weight + its bias + the two affine parameters
  (``weight``, ``bias``) of the BatchNorm that follows it. BatchNorm's running
  statistics are buffers, not parameters. The total equals
  ``sum(p.numel() for p in build(spec).parameters())`` exactly.
* **MACs** (multiply-accumulates) for *one* sample: a conv costs
  ``out_h * out_w * c_out * c_in * k * k``, a linear layer ``in * out``. BatchNorm,
  ReLU, pooling, the residual add, the option-A zero-padding, bias adds, dropout and
  the loss are not counted (each is O(activations), small next to the convs).
  ``FLOPs = 2 * MACs``, which is what ``torch.utils.flop_counter`` reports for conv
  and matmul.
* **training compute** = sum over steps of ``3 * MACs * batch``: the backward pass
  costs about twice the forward (one product for the input gradient, one for the
  weight gradient), so forward + backward is about 3x a forward.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from grownet.errors import UserError
from grownet.spec import ArchSpec, LayerShape

if TYPE_CHECKING:  # pandas is imported on first use: it takes a while to load
    import pandas as pd

#: forward + backward ~ 3 forwards (see the module docstring)
TRAIN_FACTOR = 3
#: one multiply-accumulate = 2 floating-point operations
FLOPS_PER_MAC = 2


# ------------------------------------------------------------------ per layer
@dataclass(frozen=True)
class LayerCost:
    """Cost of one conv/linear layer (with its BatchNorm) for one sample.

    Attributes
    ----------
    id, kind, role, stage
        As in :class:`grownet.spec.LayerShape` (``stage`` is ``None`` for the stem,
        hidden FC layers and the classifier).
    in_ch, out_ch
        Input channels (conv) or input features (linear), and output width.
    kernel, stride
        Conv kernel size and stride (1 for linear layers).
    out_hw
        Output map size (``(1, 1)`` for linear layers).
    weight, bias, bn
        Parameter counts of the weight, the bias and the BatchNorm's affine pair.
    macs
        Multiply-accumulates for one sample.
    """

    id: str
    kind: str
    role: str
    stage: str | None
    in_ch: int
    out_ch: int
    kernel: int
    stride: int
    out_hw: tuple[int, int]
    weight: int
    bias: int
    bn: int
    macs: int

    @property
    def params(self) -> int:
        """Weight + bias + BatchNorm affine parameters."""
        return self.weight + self.bias + self.bn

    @classmethod
    def from_shape(cls, s: LayerShape) -> LayerCost:
        """The cost of a resolved layer shape."""
        weight = 1
        for d in s.weight_shape:
            weight *= d
        if s.kind == "conv":
            macs = s.out_hw[0] * s.out_hw[1] * weight  # weight = c_out * c_in * k * k
        else:
            macs = weight  # in * out
        return cls(id=s.id, kind=s.kind, role=s.role, stage=s.stage, in_ch=s.in_ch,
                   out_ch=s.out_ch, kernel=s.kernel, stride=s.stride, out_hw=s.out_hw,
                   weight=weight, bias=s.out_ch if s.bias else 0,
                   bn=2 * s.out_ch if s.bn else 0, macs=macs)


# ------------------------------------------------------------------ the table
def human(n: float) -> str:
    """``n`` with a k / M / G suffix and 4 significant digits (``269.7 k``, ``40.55 M``)."""
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.4g} {unit}"
    return f"{n:g}"


@dataclass(frozen=True)
class CostTable:
    """Per-layer params and MACs of a spec, with totals (see :func:`count`).

    Iterating yields :class:`LayerCost` rows in forward order (classifier last);
    ``table["s1_l0"]`` looks one up by layer id.
    """

    name: str
    in_shape: tuple[int, ...]
    num_classes: int
    layers: tuple[LayerCost, ...]

    @property
    def params(self) -> int:
        """Total trainable parameters (equals ``build(spec)``'s parameter count)."""
        return sum(c.params for c in self.layers)

    @property
    def macs(self) -> int:
        """Total multiply-accumulates of one forward pass of one sample."""
        return sum(c.macs for c in self.layers)

    @property
    def flops(self) -> int:
        """``2 * macs``: floating-point operations of one forward pass of one sample."""
        return FLOPS_PER_MAC * self.macs

    def __iter__(self) -> Iterator[LayerCost]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, layer_id: str) -> LayerCost:
        for c in self.layers:
            if c.id == layer_id:
                return c
        raise KeyError(f"no layer {layer_id!r}; known: {', '.join(c.id for c in self.layers)}")

    def to_frame(self) -> pd.DataFrame:
        """One row per layer.

        Returns
        -------
        pandas.DataFrame
            Columns ``layer, kind, stage, in, out, kernel, stride, out_hw, params,
            macs``. ``stage`` is ``None`` outside stages; ``kernel``, ``stride`` and
            ``out_hw`` are missing (``<NA>`` / ``None``) for linear layers, where they
            do not apply; ``out_hw`` is a string such as ``"16x16"``. Totals are
            :attr:`params` and :attr:`macs` (or the columns' sums).
        """
        import pandas as pd

        conv = [c.kind == "conv" for c in self.layers]
        frame = pd.DataFrame({
            "layer": [c.id for c in self.layers],
            "kind": [c.kind for c in self.layers],
            "stage": [c.stage for c in self.layers],
            "in": [c.in_ch for c in self.layers],
            "out": [c.out_ch for c in self.layers],
            "kernel": pd.array([c.kernel if v else None for c, v in zip(self.layers, conv)],
                               dtype="Int64"),
            "stride": pd.array([c.stride if v else None for c, v in zip(self.layers, conv)],
                               dtype="Int64"),
            "out_hw": [f"{c.out_hw[0]}x{c.out_hw[1]}" if v else None
                       for c, v in zip(self.layers, conv)],
            "params": [c.params for c in self.layers],
            "macs": [c.macs for c in self.layers],
        })
        return frame

    def format_table(self) -> str:
        """The per-layer table as aligned text, with totals and the counting convention.

        The last lines read ``total params: 269,722 (269.7 k)`` and
        ``total MACs: 40,551,040 (40.55 M) per sample, 81.1 M FLOPs``.
        """
        total_macs = self.macs or 1  # an all-linear net on 0 features would divide by 0
        header = ("layer", "kind", "stage", "in", "out", "k", "s", "out_hw", "params",
                  "MACs", "MACs%")
        rows = [header]
        for c in self.layers:
            conv = c.kind == "conv"
            rows.append((c.id, c.kind, c.stage or "-", str(c.in_ch), str(c.out_ch),
                         str(c.kernel) if conv else "-", str(c.stride) if conv else "-",
                         f"{c.out_hw[0]}x{c.out_hw[1]}" if conv else "-", f"{c.params:,}",
                         f"{c.macs:,}", f"{100 * c.macs / total_macs:.1f}"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        left = 3  # layer, kind, stage read better left-aligned; numbers right-aligned
        lines = [f"{self.name or 'spec'}: input {'x'.join(map(str, self.in_shape))}, "
                 f"{self.num_classes} classes, {len(self.layers)} conv/linear layers"]
        for r in rows:
            lines.append("  ".join(v.ljust(w) if i < left else v.rjust(w)
                                   for i, (v, w) in enumerate(zip(r, widths))).rstrip())
        lines.insert(2, "-" * len(lines[1]))
        lines.append("-" * len(lines[1]))
        lines.append(f"total params: {self.params:,} ({human(self.params)})")
        lines.append(f"total MACs: {self.macs:,} ({human(self.macs)}) per sample, "
                     f"{human(self.flops)} FLOPs")
        lines.append("params: weights, biases, BatchNorm affine; MACs: conv and linear only "
                     "(BN, ReLU, pooling, add excluded)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format_table()


def count(spec: ArchSpec) -> CostTable:
    """Params and MACs of ``spec``, per layer and in total, from its shapes alone.

    Parameters
    ----------
    spec
        The architecture (its ``in_shape`` sets the map sizes, hence the MACs).

    Returns
    -------
    CostTable
        ``.params``, ``.macs``, ``.flops``, ``.to_frame()``, ``.format_table()``.

    Examples
    --------
    >>> import grownet as gn
    >>> t = count(gn.ArchSpec.preset("resnet56", in_shape=(3, 32, 32)))
    >>> round(t.params / 1e6, 2), round(t.macs / 1e6)
    (0.85, 125)
    """
    if not isinstance(spec, ArchSpec):
        raise TypeError(f"count() takes an ArchSpec, got {type(spec).__name__}; for a model "
                        "built by grownet.build, pass model.spec")
    return CostTable(name=spec.name, in_shape=spec.in_shape, num_classes=spec.num_classes,
                     layers=tuple(LayerCost.from_shape(s) for s in spec.shapes()))


# ------------------------------------------------------------------ latency
def latency(model: nn.Module, in_shape: Sequence[int], batch_sizes: Sequence[int] = (1, 64),
            device: str | torch.device = "cpu", repeats: int = 20,
            warmup: int = 5) -> dict[int, float]:
    """Median wall-clock seconds of one forward pass, per batch size.

    The model runs in eval mode under :func:`torch.inference_mode` on random input of
    shape ``(batch, *in_shape)``; each timed forward is one call (on CUDA, bracketed
    by ``torch.cuda.synchronize`` so that the kernel time is included). The median of
    ``repeats`` timed calls after ``warmup`` untimed ones resists outliers (other
    processes, the first-call allocations). The model is moved to ``device`` in place
    (as :meth:`nn.Module.to` does) and its train/eval mode is restored afterwards.

    Parameters
    ----------
    model
        Any module taking one ``(batch, *in_shape)`` tensor.
    in_shape
        One sample's shape, e.g. ``(3, 32, 32)``.
    batch_sizes
        Batch sizes to time.
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
    repeats, warmup
        Timed and untimed forwards per batch size.

    Returns
    -------
    dict[int, float]
        ``{batch size: median seconds per forward}`` (divide by the batch size for
        seconds per sample).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    if any(int(b) < 1 for b in batch_sizes):
        raise ValueError(f"batch sizes must be >= 1, got {tuple(batch_sizes)}")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("CUDA is not available on this machine; time on device='cpu'")
    cuda = device.type == "cuda"
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    was_training = model.training
    model.to(device).eval()
    out: dict[int, float] = {}
    try:
        with torch.inference_mode():
            for b in batch_sizes:
                x = torch.randn(int(b), *in_shape, device=device, dtype=dtype)
                for _ in range(warmup):
                    model(x)
                times = []
                for _ in range(repeats):
                    if cuda:
                        torch.cuda.synchronize(device)
                    t0 = time.perf_counter()
                    model(x)
                    if cuda:
                        torch.cuda.synchronize(device)
                    times.append(time.perf_counter() - t0)
                out[int(b)] = statistics.median(times)
    finally:
        model.train(was_training)
    return out


# ------------------------------------------------------------------ training compute
def training_compute(macs_per_sample: int, samples: int) -> int:
    """MACs to train on ``samples`` samples: ``3 * macs_per_sample * samples``.

    Forward + backward ~ 3 forwards (see the module docstring); multiply by
    :data:`FLOPS_PER_MAC` (2) for FLOPs.
    """
    if macs_per_sample < 0 or samples < 0:
        raise ValueError(f"need non-negative MACs and samples, got {macs_per_sample} and "
                         f"{samples}")
    return TRAIN_FACTOR * int(macs_per_sample) * int(samples)


class ComputeMeter:
    """Training compute of a run whose architecture may change (a growing run).

    Call :meth:`add` after every step (or epoch) with the architecture that did the
    work and the number of samples it processed; :attr:`total` is the sum of
    ``3 * MACs per sample * samples`` in MACs, :attr:`flops` the same in FLOPs.
    Evaluation passes are not training compute: do not add them (or add them to a
    second meter).

    Examples
    --------
    >>> meter = ComputeMeter()
    >>> meter.add(spec_stage0, samples=128)   # doctest: +SKIP
    >>> meter.add(spec_stage1, samples=128)   # doctest: +SKIP
    >>> meter.total, meter.flops              # doctest: +SKIP
    """

    def __init__(self) -> None:
        self.total = 0
        self.samples = 0
        # add() runs every step: cache the last spec's MACs (growth changes it rarely).
        self._spec: ArchSpec | None = None
        self._spec_macs = 0

    def macs_of(self, spec_or_macs: ArchSpec | CostTable | int) -> int:
        """Per-sample forward MACs of an ArchSpec, a CostTable or a plain number."""
        if isinstance(spec_or_macs, ArchSpec):
            if spec_or_macs is not self._spec:
                self._spec, self._spec_macs = spec_or_macs, count(spec_or_macs).macs
            return self._spec_macs
        if isinstance(spec_or_macs, CostTable):
            return spec_or_macs.macs
        if isinstance(spec_or_macs, bool) or not isinstance(spec_or_macs, int):
            raise TypeError("add() takes an ArchSpec, a CostTable or MACs per sample (int), "
                            f"got {type(spec_or_macs).__name__}")
        return spec_or_macs

    def add(self, spec_or_macs: ArchSpec | CostTable | int, samples: int) -> int:
        """Account ``samples`` training samples through the given architecture.

        Returns
        -------
        int
            The MACs added (``3 * MACs per sample * samples``).
        """
        added = training_compute(self.macs_of(spec_or_macs), samples)
        self.total += added
        self.samples += int(samples)
        return added

    @property
    def flops(self) -> int:
        """:attr:`total` in FLOPs (``2 * MACs``)."""
        return FLOPS_PER_MAC * self.total

    def state_dict(self) -> dict[str, int]:
        """Primitives for a checkpoint (so that a resumed run keeps counting)."""
        return {"total": self.total, "samples": self.samples}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore :meth:`state_dict`."""
        self.total = int(state["total"])
        self.samples = int(state["samples"])

    def __repr__(self) -> str:
        return (f"ComputeMeter(total={human(self.total)} MACs, {human(self.flops)} FLOPs, "
                f"samples={self.samples:,})")


__all__ = ["ComputeMeter", "CostTable", "FLOPS_PER_MAC", "LayerCost", "TRAIN_FACTOR", "count",
           "human", "latency", "training_compute"]
