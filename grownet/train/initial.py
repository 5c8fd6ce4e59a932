"""The initialisation of a growing network, carried through every growth step.

The lottery procedure (ALGORITHMS A10) retrains a ticket from the weights each filter
had when it was created. In a grown net filters are created at different stages, so
the "initial" network is assembled: old entries keep the initial values they already
had, entries that growth created take the values they were created with.
"""

from __future__ import annotations

import torch
from torch import nn

from grownet import surgery
from grownet.nets import build
from grownet.spec import ArchSpec


@torch.no_grad()
def carry_initial(initial: dict[str, torch.Tensor], old_spec: ArchSpec, new_spec: ArchSpec,
                  created: nn.Module) -> dict[str, torch.Tensor]:
    """The initial parameters of ``new_spec``.

    Parameters
    ----------
    initial
        Initial parameters of ``old_spec`` (name → tensor).
    old_spec, new_spec
        The architecture before and after growth.
    created
        The new model right after surgery: its new entries hold their creation values.
    """
    old = build(old_spec)
    old.load_state_dict(initial, strict=False)
    carried, _ = surgery.transplant(old, new_spec, init="zero")
    # Which entries surgery copies from the old model: transplant an all-NaN model and
    # see where the NaNs land.
    marker = build(old_spec)
    for p in marker.parameters():
        p.fill_(float("nan"))
    marked, _ = surgery.transplant(marker, new_spec, init="zero")
    now = dict(created.named_parameters())
    mark = dict(marked.named_parameters())
    out = {}
    for name, value in carried.named_parameters():
        fresh = now[name].detach().to(value.device)
        out[name] = torch.where(torch.isnan(mark[name]), value, fresh).detach().clone()
    return out


def initial_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.named_parameters()}
