"""How a model's parameters split into coupled and plain DessiLBI groups."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from grownet.errors import UserError
from grownet.optim.common import STRUCTURES


def _classifier(model: nn.Module, modules: dict[str, nn.Module]) -> nn.Module | None:
    """``model.classifier_name``'s module if the model names one, else the last Linear."""
    if hasattr(model, "classifier_name"):
        cname = model.classifier_name
        if cname not in modules:
            raise UserError(
                f"lbi_param_groups: model.classifier_name={cname!r} names no submodule; "
                "set it to the name of the output layer as in model.named_modules()"
            )
        return modules[cname]
    linears = [m for m in modules.values() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def lbi_param_groups(
    model: nn.Module, hidden_linear: str = "filter", per_layer: bool = False
) -> list[dict[str, Any]]:
    """Split a model's parameters into the DessiLBI groups that growth needs.

    Rule:

    * ``structure="filter"``: the 4-D weight of every ``nn.Conv2d`` (one group
      per output filter ``W[o, :, :, :]``) and the weight of every hidden
      ``nn.Linear`` (one group per output neuron ``W[o, :]``).
    * ``structure="none"`` (plain SGD): everything else: the classifier's weight,
      every bias, BatchNorm weights and any parameter of other module types.

    The classifier is the module named by ``model.classifier_name`` if the model
    has that attribute, else the last ``nn.Linear`` in ``model.modules()`` order.
    Groups carry ``names`` from ``model.named_parameters()``; the support tracker
    uses ``name`` minus a trailing ``".weight"`` as the layer name. Empty groups are
    left out; otherwise the order is ``[filter, none]``.

    Parameters
    ----------
    model
        The network.
    hidden_linear
        ``"filter"`` (default, neuron-wise groups) or ``"element"`` (plain lasso,
        as the reference code does for every 2-D weight).
    per_layer
        One parameter group per coupled weight (each can then carry its own ``lam``,
        see :func:`~grownet.optim.layer_lams`) instead of one per structure; the
        plain group stays last.

    Returns
    -------
    list of dict
        Parameter groups for :class:`DessiLBI`.
    """
    if hidden_linear not in ("filter", "element"):
        raise UserError(
            f"lbi_param_groups: hidden_linear={hidden_linear!r} is invalid; "
            "use 'filter' (neuron-wise) or 'element' (lasso)"
        )
    modules = dict(model.named_modules())
    classifier = _classifier(model, modules)
    kind: dict[int, str] = {}  # id(weight) -> structure of coupled weights
    for mod in modules.values():
        w = getattr(mod, "weight", None)
        if not isinstance(w, nn.Parameter) or mod is classifier:
            continue
        if isinstance(mod, nn.Conv2d) and w.ndim == 4:
            kind[id(w)] = "filter"
        elif isinstance(mod, nn.Linear) and w.ndim == 2:
            kind[id(w)] = hidden_linear
    groups: dict[str, dict[str, Any]] = {}
    for name, p in model.named_parameters():
        st = kind.get(id(p), "none")
        grp = groups.setdefault(st, {"params": [], "names": [], "structure": st})
        grp["params"].append(p)
        grp["names"].append(name)
    ordered = [groups[s] for s in STRUCTURES if s in groups]
    if not per_layer:
        return ordered
    split = []
    for grp in ordered:
        if grp["structure"] == "none":
            split.append(grp)
            continue
        split += [{"params": [p], "names": [n], "structure": grp["structure"]}
                  for p, n in zip(grp["params"], grp["names"])]
    return split


def group_norms(p: torch.Tensor, structure: str) -> torch.Tensor:
    """The norm of every sparsity group of ``p``: row norms ``||W[o]||`` for
    ``"filter"``, ``|W_ij|`` for ``"element"`` (float32, on ``p``'s device)."""
    w = p.detach().float()
    if structure == "filter" and w.ndim > 1:
        return torch.linalg.vector_norm(w.flatten(1), dim=1)
    return w.abs().flatten()


def typical_filter_norm(model: nn.Module) -> float:
    """Median row norm ``||W[o]||`` over the filter-wise coupled weights of ``model``.

    The coupled weights are those :func:`lbi_param_groups` puts in the
    ``"filter"`` group (conv filters and hidden linear neurons). Call it at
    initialisation and pass the result to :func:`nu_for_entry`.
    """
    norms = [
        group_norms(p, "filter").cpu()
        for g in lbi_param_groups(model)
        if g["structure"] == "filter"
        for p in g["params"]
        if p.ndim > 1
    ]
    if not norms:
        raise UserError(
            "typical_filter_norm: the model has no conv or hidden linear weights; "
            "pass typical_norm to nu_for_entry yourself"
        )
    return float(torch.cat(norms).median())
