"""`build(spec) -> nn.Module`, with parameter names that come from layer ids.

Every conv/linear layer is a direct child named by its id (``s1_l0``, ``s2_b0_conv1``,
``head``), its BatchNorm is ``<id>_bn``; so ``s1_l0.weight`` names the same layer in
every stage of a growing run. The forward pass walks the spec's resolved shapes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from grownet.spec import INPUT, ArchSpec, LayerShape


def bn_name(layer_id: str) -> str:
    """Module name of the BatchNorm that follows layer ``layer_id``."""
    return f"{layer_id}_bn"


class GrowNet(nn.Module):
    """The network described by an :class:`ArchSpec` (see :func:`build`)."""

    classifier_name = "head"

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        self._shapes = spec.shapes()
        for s in self._shapes:
            if s.kind == "conv":
                layer: nn.Module = nn.Conv2d(s.in_channels, s.out_ch, s.kernel, s.stride,
                                             s.padding, bias=s.bias)
                norm = nn.BatchNorm2d(s.out_ch) if s.bn else None
            else:
                layer = nn.Linear(s.in_ch, s.out_ch, bias=s.bias)
                norm = nn.BatchNorm1d(s.out_ch) if s.bn else None
            self.add_module(s.id, layer)
            if norm is not None:
                self.add_module(bn_name(s.id), norm)
        self._by_id = {s.id: s for s in self._shapes}
        self._pool_after = {st.layers[-1].id: st.pool for st in spec.stages if st.layers}

    # Not named `_apply`: nn.Module uses that name for .to() / .cuda() / .half().
    def _run_layer(self, s: LayerShape, x: torch.Tensor, relu: bool = True) -> torch.Tensor:
        x = getattr(self, s.id)(x)
        if s.bn:
            x = getattr(self, bn_name(s.id))(x)
        return F.relu(x) if relu else x

    def _shortcut(self, s: LayerShape, x: torch.Tensor) -> torch.Tensor:
        if s.proj is not None:
            return self._run_layer(self._by_id[s.proj], x, relu=False)
        stride = self._by_id[s.inputs[0]].stride  # conv1 of the block carries its stride
        if stride > 1:
            x = x[:, :, ::stride, ::stride]
        extra = s.out_ch - x.shape[1]
        # Option A: zero channels appended at the end, so that channel i stays channel i
        # when either side is widened (the widening is then function-preserving).
        return F.pad(x, (0, 0, 0, 0, 0, extra)) if extra else x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The readout vector fed to the hidden FC layers / classifier."""
        block_in = x
        for s in self._shapes:
            if s.kind != "conv":
                break
            if s.role == "proj":
                continue  # applied by the block's conv2
            if s.role == "conv1":
                block_in = x
            if s.role == "conv2":
                x = self._run_layer(s, x, relu=False)
                x = F.relu(x + self._shortcut(s, block_in))
            else:
                x = self._run_layer(s, x)
            pool = self._pool_after.get(s.id, "none")
            if pool == "max":
                x = F.max_pool2d(x, 2)
            elif pool == "avg":
                x = F.avg_pool2d(x, 2)
        if self.spec.readout == "avg" and x.dim() == 4 and self._shapes[0].kind == "conv":
            return x.mean(dim=(2, 3))
        return torch.flatten(x, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        for s in self._shapes:
            if s.kind != "linear":
                continue
            if s.role == "head":
                return getattr(self, s.id)(x)
            x = self._run_layer(s, x)
            if s.dropout:
                x = F.dropout(x, s.dropout, self.training)
        raise AssertionError("a spec always ends with its classifier")


def parameters_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{name: value}`` of every parameter, on the CPU (what a run's ``init/`` stores)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.named_parameters()}


def init_weights(model: GrowNet) -> None:
    """Kaiming-normal (fan-out) convs, N(0, 0.01) linears, BN 1/0, zero biases
    (the DessiLBI growth example's initialisation)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            nn.init.zeros_(m.bias)


def he_init(model: GrowNet) -> None:
    """He initialisation: Kaiming-normal (fan-in, ReLU gain) weights for every conv and
    linear layer, zero biases, BN 1/0, so that a ReLU net's activations keep their scale
    from layer to layer."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


#: ``build``'s initialisations (``--init``)
INITS = ("default", "kaiming", "he")


def build(spec: ArchSpec, init: str = "default") -> GrowNet:
    """The ``nn.Module`` for ``spec``.

    Parameters
    ----------
    spec
        The architecture.
    init
        ``"default"``: PyTorch's layer defaults (Kaiming-uniform with ``a = sqrt(5)``,
        the DST reference's); ``"kaiming"``: :func:`init_weights` (the DessiLBI growth
        example's); ``"he"``: :func:`he_init`.
    """
    model = GrowNet(spec)
    if init == "kaiming":
        init_weights(model)
    elif init == "he":
        he_init(model)
    elif init != "default":
        raise ValueError(f"unknown init {init!r}; use one of {', '.join(INITS)}")
    return model


__all__ = ["GrowNet", "INITS", "INPUT", "bn_name", "build", "he_init", "init_weights"]
