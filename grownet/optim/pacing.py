"""Pacing the Γ path: choose ``nu`` or ``lam`` from when a filter should enter."""

from __future__ import annotations

from typing import Any

from grownet.errors import UserError


def _check_positive(where: str, values: tuple[tuple[str, object], ...]) -> None:
    for key, val in values:
        if isinstance(val, bool) or not isinstance(val, (int, float)) or not val > 0:
            raise UserError(f"{where}: {key}={val!r} is invalid; pass a number > 0")


def nu_for_entry(
    target_epoch: float,
    steps_per_epoch: int,
    lr: float,
    typical_norm: float = 1.0,
    lam: float = 1.0,
) -> float:
    """The ``nu`` that makes a group of norm ``typical_norm`` enter at ``target_epoch``.

    While ``Γ_g = 0`` and ``W_g`` is roughly constant, ``V_g`` grows by
    ``(a/ν) W_g`` per step, so the group enters the support (``||V_g|| > λ``) after
    ``k* = λ ν / (a ||W_g||)`` steps (ALGORITHMS A5). Solving for ``ν`` with
    ``k* = target_epoch * steps_per_epoch`` gives ``ν = a ||W_g|| k* / λ``. Larger
    groups enter earlier (in inverse proportion to their norm); a learning-rate
    decay slows the path proportionally.

    Parameters
    ----------
    target_epoch
        Epochs (may be fractional) after which a typical group should enter.
    steps_per_epoch
        Optimizer steps per epoch.
    lr
        The step size ``a`` (the optimizer's ``lr``).
    typical_norm
        A typical filter norm ``||W_g||``; see :func:`typical_filter_norm`.
    lam
        The optimizer's ``lam``.

    Returns
    -------
    float
        ``nu`` for :class:`DessiLBI`.
    """
    _check_positive('nu_for_entry', (
        ("target_epoch", target_epoch),
        ("steps_per_epoch", steps_per_epoch),
        ("lr", lr),
        ("typical_norm", typical_norm),
        ("lam", lam),
    ))
    return float(lr) * float(typical_norm) * float(target_epoch) * float(steps_per_epoch) / lam


def lam_for_entry(
    target_epoch: float,
    steps_per_epoch: int,
    lr: float,
    nu: float,
    typical_norm: float = 1.0,
) -> float:
    """The ``lam`` that makes a group of norm ``typical_norm`` enter at ``target_epoch``.

    The same relation as :func:`nu_for_entry` (``k* = λ ν / (a ||W_g||)``), solved for
    ``λ`` with ``ν`` fixed. Pacing through ``λ`` keeps the coupling pull
    ``a κ / ν`` per step as weak as the chosen ``ν`` (the reference's 100), while a
    small ``ν`` would also act as strong shrinkage on every unselected filter; this is
    what ``grownet grow`` uses (docs/optim.md).
    """
    _check_positive('lam_for_entry', (
        ("target_epoch", target_epoch),
        ("steps_per_epoch", steps_per_epoch),
        ("lr", lr),
        ("nu", nu),
        ("typical_norm", typical_norm),
    ))
    k_star = float(target_epoch) * float(steps_per_epoch)
    return float(lr) * float(typical_norm) * k_star / float(nu)


def layer_lams(groups: list[dict[str, Any]], path_lr: float, nu: float,
               skip: set[str] | frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """Give every coupled group its own ``lam``: the one that makes a *typical* group
    of that layer (the median of its initial group norms) enter after the steps whose
    step sizes sum to ``path_lr``.

    While ``Γ_g = 0`` and ``W_g`` is roughly constant, ``||V_g||`` grows by
    ``a_k ||W_g|| / ν`` per step, so the group enters once ``Σ a_k ||W_g|| / ν > λ``
    (ALGORITHMS A5, with a varying step size): ``λ = median ||W_g|| · path_lr / ν``.
    With a constant ``lr``, ``path_lr = lr · steps`` and this is :func:`lam_for_entry`
    with each layer's own typical norm. Pacing one λ for a filter of norm 1 instead lets
    layers of small initial norm (LeNet-5's linear rows start at 0.1–0.2) enter far
    later than the convs, so an early ticket cuts them to a unit or two.

    Parameters
    ----------
    groups
        Parameter groups as :func:`~grownet.optim.lbi_param_groups` returns them with
        ``per_layer=True`` (one coupled tensor per group); changed in place.
    path_lr
        Sum of the step sizes ``a_k`` over the steps before a typical group should enter.
    nu
        The optimizer's ``nu``.
    skip
        Names of coupled parameters whose group keeps its ``lam`` (re-pacing an
        optimizer's groups, ``opt.param_groups``, layers that have begun to enter).

    Returns
    -------
    list of dict
        ``groups``, each coupled group with ``lam`` set (plain groups untouched).
    """
    _check_positive("layer_lams", (("path_lr", path_lr), ("nu", nu)))
    from grownet.optim.groups import group_norms

    for group in groups:
        if group["structure"] == "none" or group.get("names", [None])[0] in skip:
            continue
        if len(group["params"]) != 1:
            raise UserError("layer_lams: a coupled group holds several tensors; build the "
                            "groups with lbi_param_groups(model, per_layer=True)")
        norm = float(group_norms(group["params"][0], group["structure"]).median())
        if not norm > 0:
            raise UserError(f"layer_lams: the weights of {group.get('names', ['?'])[0]} are "
                            "all zero; initialise the model before pacing λ")
        group["lam"] = norm * float(path_lr) / float(nu)
    return groups
