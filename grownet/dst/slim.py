"""`slim_masked`: bake a DST model's masks into a dense model and remove fully masked
filters physically, keeping the eval-mode function exact."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from grownet.dst.layers import MaskedLayer
from grownet.errors import UserError
from grownet.nets import GrowNet, bn_name, build
from grownet.spec import ArchSpec, LayerShape
from grownet.surgery import slim, transplant

# Layers whose filters can go: plain convs, residual blocks' inner convs, hidden FC layers.
# The stem and the residual streams (conv2 / proj) keep their width: their channels also
# travel along shortcuts, where a removed channel would change other channels.
SLIMMABLE_ROLES = ("conv", "conv1", "hidden")


def bake(spec: ArchSpec, model: nn.Module) -> GrowNet:
    """A plain ``build(spec)`` model holding ``model``'s state with ``W * M`` as weights.

    Parameters
    ----------
    spec
        The architecture ``model`` was built from.
    model
        A model from :func:`grownet.build` (converted by :func:`grownet.dst.convert` or
        not): its masks are the ones its next forward pass would use.

    Returns
    -------
    GrowNet
        On ``model``'s device and dtype, in its train/eval mode; no thresholds.
    """
    if isinstance(model, GrowNet) and model.spec != spec:
        raise UserError("slim_masked: the model was built from a different spec; pass "
                        "model.spec")
    masked = {name: m.mask() for name, m in model.named_modules()
              if isinstance(m, MaskedLayer)}
    state: dict[str, Tensor] = {}
    for key, value in model.state_dict().items():
        module, _, leaf = key.rpartition(".")
        if module in masked and leaf == "threshold":
            continue
        state[key] = value * masked[module] if module in masked and leaf == "weight" else value
    ref = next(model.parameters())
    dense = build(spec).to(device=ref.device, dtype=ref.dtype)
    try:
        dense.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1].strip()
        raise UserError(f"slim_masked: the model does not match the spec ({first}); pass the "
                        "spec the model was built from") from None
    return dense.train(model.training)


def _carried_constant(dense: GrowNet, s: LayerShape) -> Tensor:
    """Per output channel of ``s``: the value it carries (after BN and ReLU, eval mode)
    when its filter is all zero. Such a channel is that constant everywhere, through
    pooling and the readout too."""
    layer = getattr(dense, s.id)
    w = layer.weight.detach()
    c = layer.bias.detach().clone() if layer.bias is not None else w.new_zeros(w.shape[0])
    if s.bn:
        bn = getattr(dense, bn_name(s.id))
        c = F.batch_norm(c[None], bn.running_mean, bn.running_var, bn.weight, bn.bias,
                         training=False, momentum=0.0, eps=bn.eps)[0]
    return c.clamp_min(0.0)  # every slimmable role is followed by a ReLU


def _unit_contribution(weight: Tensor, consumer: LayerShape, width: int) -> Tensor:
    """``(consumer out, width)``: what a constant 1 on each producer channel adds to each
    consumer output (its kernel, or its ``in_spatial`` readout features, summed)."""
    w = weight.detach()
    if consumer.kind == "linear":
        return w.view(w.shape[0], width, -1).sum(dim=2)
    return w.sum(dim=(2, 3))


def _removable(spec: ArchSpec, dense: GrowNet) -> dict[str, list[int]]:
    """``keep`` for :func:`grownet.surgery.slim`; shifts the consumers' bias (or BN running
    mean) in ``dense`` by the constants of the removed channels."""
    shapes = spec.shapes()
    consumer = {s.inputs[0]: s for s in shapes if s.role != "proj"}
    keep: dict[str, list[int]] = {}
    for s in shapes:
        if s.role not in SLIMMABLE_ROLES:
            continue
        zero = (getattr(dense, s.id).weight.detach().flatten(1) == 0).all(dim=1)
        if not bool(zero.any()):
            continue
        k = consumer[s.id]
        k_layer = getattr(dense, k.id)
        k_bn = getattr(dense, bn_name(k.id), None) if k.bn else None
        c = _carried_constant(dense, s)
        unit = _unit_contribution(k_layer.weight, k, s.out_ch)
        # A constant channel adds a constant to every consumer output, unless zero padding
        # makes the border see less of it; that constant can move into the consumer's bias
        # (or, without one, into its BN running mean: batch statistics ignore a shift).
        can_shift = (k.kind == "linear" or k.padding == 0) and (
            k_layer.bias is not None or k_bn is not None)
        silent = (c == 0) | (unit == 0).all(dim=0)
        gone = zero & (silent | can_shift)
        if bool(gone.all()):
            gone[0] = False  # a layer keeps at least one filter
        if not bool(gone.any()):
            continue
        delta = unit[:, gone] @ c[gone]
        with torch.no_grad():
            if k_layer.bias is not None:
                k_layer.bias += delta
            elif k_bn is not None:
                k_bn.running_mean -= delta  # silent channels only otherwise: delta == 0
        keep[s.id] = (~gone).nonzero().flatten().tolist()
    return keep


def slim_masked(spec: ArchSpec, model: nn.Module) -> tuple[ArchSpec, GrowNet]:
    """A dense, physically smaller model computing what ``model`` computes in eval mode.

    Bakes the masks into the weights (:func:`bake`), then removes every filter whose
    baked weights are all zero, where that is exact: the filter's channel is then a
    constant (its bias through BN and ReLU), which is dropped when it is 0 or when the
    consumer can absorb it (a linear layer, or a conv without padding, with a bias or a
    BatchNorm), and kept otherwise. Plain convs, residual blocks' inner convs and hidden
    FC layers are slimmed; the classifier keeps all outputs, and the stem and residual
    streams keep their width (their channels also run along shortcuts). Uses
    :func:`grownet.surgery.slim` and :func:`grownet.surgery.transplant`.

    Parameters
    ----------
    spec
        The architecture ``model`` was built from.
    model
        A DST model (``convert(build(spec))``, trained).

    Returns
    -------
    (ArchSpec, GrowNet)
        The slimmed spec and its dense model (no thresholds), on ``model``'s device and
        dtype and in its train/eval mode. Equal logits in eval mode; in train mode,
        BatchNorm batch statistics and dropout of the removed constant channels differ.
    """
    dense = bake(spec, model)
    keep = _removable(spec, dense)
    if not keep:
        return spec, dense
    new_spec = slim(spec, keep)
    new_model, _ = transplant(dense, new_spec, keep=keep)
    return new_spec, new_model


__all__ = ["SLIMMABLE_ROLES", "bake", "slim_masked"]
