"""DessiLBI: SGD coupled with a sparse structure parameter Γ (ALGORITHMS.md, Part A).

Every *coupled* weight ``W`` (a parameter in a group whose ``structure`` is
``"filter"`` or ``"element"``) carries two extra tensors of its own shape: ``V``
and ``Γ``. ``Γ`` starts at exactly zero; its support (the filters, neurons or
elements that are "selected") grows along an inverse-scale-space path as ``V``
integrates ``(W - Γ)/ν``. Groups with ``structure="none"`` get plain SGD with
momentum and learning rate ``lr * kappa``.

Also here: :func:`lbi_param_groups` (how a model's parameters are split into
coupled and plain groups), and the pacing helpers :func:`nu_for_entry`,
:func:`lam_for_entry`, :func:`layer_lams` (one λ per layer) and
:func:`typical_filter_norm`. ``docs/optim.md`` has the user-facing guide.
"""

from grownet.optim.common import STRUCTURES
from grownet.optim.groups import lbi_param_groups, typical_filter_norm
from grownet.optim.lbi import DessiLBI
from grownet.optim.pacing import lam_for_entry, layer_lams, nu_for_entry

__all__ = [
    "STRUCTURES",
    "DessiLBI",
    "lam_for_entry",
    "layer_lams",
    "lbi_param_groups",
    "nu_for_entry",
    "typical_filter_norm",
]
