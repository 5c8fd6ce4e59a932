"""The end of a DST run: fully masked filters removed physically, and what remains."""

from __future__ import annotations

from typing import Any

from torch import nn

from grownet import dst
from grownet.cost import count
from grownet.spec import ArchSpec


def slim_at_finish(spec: ArchSpec, model: nn.Module, epoch: int
                   ) -> tuple[ArchSpec, nn.Module, dict[str, Any], str]:
    """``(spec, model, event, message)`` after removing the filters DST masked entirely.

    The event (for ``events.jsonl``) records params/MACs before and after and the
    unstructured sparsity that remains (which does not lower dense MACs)."""
    before = count(spec)
    sparsity = dst.overall_sparsity(model)
    new_spec, new_model = dst.slim_masked(spec, model)
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
    return new_spec, new_model, event, message
