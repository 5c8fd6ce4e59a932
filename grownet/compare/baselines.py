"""The plain alternatives a grown net must beat at its own cost: its start widened
uniformly, and the grown architecture with its MACs allocated at random.

Both are specs with the grown net's MACs (within :data:`MACS_TOLERANCE`), trained by
``grownet compare`` with the grown run's method, recipe and epochs.
"""

from __future__ import annotations

import math
import random

from grownet.cost import count
from grownet.errors import UserError
from grownet.spec import ArchSpec, SpecError
from grownet.surgery import _specedit

#: how far a baseline's MACs may lie from the grown net's (relative)
MACS_TOLERANCE = 0.05
BASELINES = ("uniform", "random")


def _units(spec: ArchSpec) -> dict[str, int]:
    """The widths growth changes, by the id :func:`with_widths` takes: every conv and
    hidden layer but the classifier by layer id, a residual stream by its stage id."""
    out: dict[str, int] = {}
    for s in spec.shapes():
        if s.role in ("head", "proj"):
            continue
        out[s.stage if s.group else s.id] = s.out_ch
    return out


def with_widths(spec: ArchSpec, widths: dict[str, int]) -> ArchSpec:
    """``spec`` with the widths of :func:`_units`' ids replaced (at least 1 each)."""
    streams = {st.id for st in spec.stages if st.blocks}
    return _specedit.with_widths(
        spec, layers={k: max(1, int(v)) for k, v in widths.items() if k not in streams},
        streams={k: max(1, int(v)) for k, v in widths.items() if k in streams})


def scaled_to(spec: ArchSpec, base: dict[str, float], macs: int) -> ArchSpec:
    """``spec`` with widths ``α · base``, ``α`` chosen by bisection so that its MACs come
    closest to ``macs``; then each width rounded down or up (one filter at most) where
    that brings the MACs closer (small nets move in large steps per filter)."""
    def at(alpha: float) -> int:
        return count(with_widths(spec, {k: max(1, round(alpha * v))
                                        for k, v in base.items()})).macs

    lo, hi = 1e-3, 1.0
    while at(hi) < macs:  # MACs grow with α: find an upper bracket
        hi *= 2
        if hi > 1e4:
            raise UserError(f"cannot scale {spec.name!r} to {macs:,} MACs")
    for _ in range(40):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if at(mid) < macs else (lo, mid)
    widths = {k: max(1, math.floor(hi * v)) for k, v in base.items()}
    best = with_widths(spec, widths)
    # round single widths up instead (each at most once: the scaling stays uniform to a
    # filter), cheapest first, while that gets closer to ``macs``
    floors = dict(widths)
    for _ in range(len(widths)):
        bumps = []
        for k in widths:
            if widths[k] > floors[k]:
                continue
            try:
                bumps.append(with_widths(spec, {**widths, k: floors[k] + 1}))
            except SpecError:  # e.g. an option-A stream may not get narrower downstream
                continue
        if not bumps:
            break
        step = min(bumps, key=lambda b: count(b).macs)
        if abs(count(step).macs - macs) >= abs(count(best).macs - macs):
            break
        best, widths = step, {k: _units(step)[k] for k in widths}
    return best



def uniform(start: ArchSpec, macs: int) -> ArchSpec:
    """The start with every width scaled by one factor to ``macs`` MACs."""
    out = scaled_to(start, {k: float(v) for k, v in _units(start).items()}, macs)
    return out.replace(name=f"uniform({start.name})")


def random_allocation(grown: ArchSpec, start: ArchSpec, macs: int, seed: int) -> ArchSpec:
    """The grown architecture (its layers, its depth) with widths drawn at random: each
    unit log-uniform within a factor 4 of the start's width (a layer growth inserted
    takes the widest start width), then all scaled to ``macs`` MACs."""
    rng = random.Random(seed)
    start_widths = _units(start)
    default = max(start_widths.values())
    for _ in range(100):  # residual streams must not narrow along the net: draw again
        base = {k: start_widths.get(k, default) * math.exp(rng.uniform(-math.log(4),
                                                                       math.log(4)))
                for k in _units(grown)}
        try:
            return scaled_to(grown, base, macs).replace(name=f"random({start.name})")
        except SpecError:
            continue
    raise UserError(f"no random allocation of {grown.name!r} builds; compare without "
                    "'random'")
