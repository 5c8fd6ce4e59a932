"""Pacing the Γ path: choose ``nu`` or ``lam`` from when a filter should enter."""

from __future__ import annotations

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
