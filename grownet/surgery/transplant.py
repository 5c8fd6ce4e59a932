"""`transplant`: build the new model and carry weights, BatchNorm statistics and
optimizer state into it, by index (see :mod:`grownet.surgery.change`)."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from grownet.errors import UserError
from grownet.nets import GrowNet, bn_name, build
from grownet.spec import INPUT, ArchSpec, LayerShape
from grownet.surgery.change import FRESH, Change, Keep, plan

INITS = ("zero", "split", "random")
OptimizerFactory = Callable[[nn.Module], torch.optim.Optimizer]


@dataclass(frozen=True)
class _Index:
    """Where a layer's old entries go: rows (output channels) and weight columns."""

    rows_new: Tensor  # weights: carried rows and split copies
    rows_old: Tensor
    cols_new: Tensor  # weight columns (input features) that have an old source
    cols_old: Tensor
    col_scale: Tensor  # 1/copies of the source column (split), else 1
    cols_fresh: Tensor  # columns reading new channels with no source
    st_rows_new: Tensor  # optimizer state: carried rows / columns only (copies start at 0)
    st_rows_old: Tensor
    st_cols_new: Tensor
    st_cols_old: Tensor


def _long(xs: Sequence[int]) -> Tensor:
    return torch.tensor(list(xs), dtype=torch.long)


def _pairs(src: Sequence[int]) -> tuple[Tensor, Tensor]:
    new = [j for j, o in enumerate(src) if o != FRESH]
    return _long(new), _long([src[j] for j in new])


def _expand(src: Sequence[int], spatial: int) -> list[int]:
    """Channel map -> feature map: channel c spans features [c*spatial, (c+1)*spatial)."""
    if spatial == 1:
        return list(src)
    return [FRESH if c == FRESH else c * spatial + k for c in src for k in range(spatial)]


def _origins(change: Change, old: GrowNet, init: str,
             split_from: Mapping[str, Sequence[int]]) -> dict[str, list[int]]:
    """Per producer key: for each new channel, the old channel it equals (carried or a
    split copy), or FRESH."""
    members: dict[str, list[str]] = {}
    for s in change.new.shapes():
        key = s.group or s.id
        if s.id in change.out_maps:
            members.setdefault(key, []).append(s.id)
    given: dict[str, list[int]] = {}
    for layer_id, src in split_from.items():
        key = next((k for k, ids in members.items() if layer_id in ids), None)
        if key is None:
            raise UserError(f"split_from names {layer_id!r}, which is not a layer of the new "
                            "spec that can be split")
        if init != "split" or key in change.unsplittable:
            why = ("applies to init='split' only" if init != "split" else
                   "cannot be split exactly (its channels continue through identity or "
                   "zero-pad shortcuts); leave it out, it gets init='zero'")
            raise UserError(f"split_from[{layer_id!r}] {why}")
        given[key] = [int(c) for c in src]
    origins: dict[str, list[int]] = {INPUT: list(range(change.new.in_shape[0]))}
    for key, ids in members.items():
        src = list(change.out_maps[ids[0]])
        fresh = [j for j, o in enumerate(src) if o == FRESH]
        if init == "split" and fresh and key not in change.unsplittable:
            old_ids = [i for i in ids if i not in change.inserted]
            w = getattr(old, old_ids[0]).weight.detach()
            if key in given:
                pick = given[key]
                if len(pick) != len(fresh) or not all(0 <= c < w.shape[0] for c in pick):
                    raise UserError(f"split_from[{key!r}] must list {len(fresh)} old filter "
                                    f"indices in 0..{w.shape[0] - 1}, one per new filter")
            else:
                # Net2Net: copy the strongest filters first (largest weight norm).
                carried = [o for o in src if o != FRESH]
                norms = w.flatten(1).norm(dim=1)[carried]
                order = [carried[i] for i in torch.argsort(-norms, stable=True).tolist()]
                pick = [order[i % len(order)] for i in range(len(fresh))]
            for j, c in zip(fresh, pick):
                src[j] = c
        origins[key] = src
    return origins


def _index(change: Change, s: LayerShape, origins: dict[str, list[int]]) -> _Index:
    rows = origins[s.group or s.id]
    out_map = change.out_maps[s.id]
    in_map = change.in_maps[s.id]
    key = change.in_keys[s.id]
    producer = origins.get(key, []) if key is not None else []
    count = Counter(o for o in producer if o != FRESH)
    # A new input channel that is a split copy reads its source's weights; every copy of
    # a source (the original included) then gets 1/copies of them, so their sum is exact.
    cols = [o if o != FRESH else (producer[i] if i < len(producer) else FRESH)
            for i, o in enumerate(in_map)]
    scale = [1.0 / count[c] if c != FRESH and count[c] else 1.0 for c in cols]
    spatial = change.in_spatial[s.id]
    cols_f = _expand(cols, spatial)
    scale_f = [x for x in scale for _ in range(spatial)]
    cols_new, cols_old = _pairs(cols_f)
    rows_new, rows_old = _pairs(rows)
    st_rows_new, st_rows_old = _pairs(out_map)
    st_cols_new, st_cols_old = _pairs(_expand(in_map, spatial))
    return _Index(rows_new, rows_old, cols_new, cols_old,
                  torch.tensor([scale_f[j] for j in cols_new.tolist()]),
                  _long([j for j, c in enumerate(cols_f) if c == FRESH]),
                  st_rows_new, st_rows_old, st_cols_new, st_cols_old)


def _gather(old: Tensor, new: Tensor, ix: _Index, *, state: bool = False) -> Tensor:
    """``new`` with the old entries of ``old`` placed by index (weights or 1-D per filter)."""
    out = new.clone()
    rn, ro = (ix.st_rows_new, ix.st_rows_old) if state else (ix.rows_new, ix.rows_old)
    rn, ro = rn.to(old.device), ro.to(old.device)
    if old.ndim == 1:
        out[rn] = old[ro]
        return out
    cn, co = (ix.st_cols_new, ix.st_cols_old) if state else (ix.cols_new, ix.cols_old)
    cn, co = cn.to(old.device), co.to(old.device)
    block = old[ro][:, co]
    if not state:
        block = block * ix.col_scale.to(old).view((1, -1) + (1,) * (old.ndim - 2))
    out[rn.unsqueeze(1), cn.unsqueeze(0)] = block
    return out


def _passthrough_bn(bn: nn.Module | None) -> None:
    """Eval-mode identity: y = (x - 0) / sqrt(1 - eps + eps) * 1 + 0."""
    if bn is not None:
        bn.weight.fill_(1.0)
        bn.bias.zero_()
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)


def _init_inserted(change: Change, s: LayerShape, model: GrowNet) -> None:
    layer = getattr(model, s.id)
    bn = getattr(model, bn_name(s.id), None)
    if s.role == "conv1":
        return  # inserted block: random inner conv; its conv2's BN silences the branch
    if s.role == "conv2":
        # Zero last BN: the branch adds exactly 0, so the block outputs relu(x) = x (x >= 0
        # after the previous ReLU); gamma still gets gradients where x > 0.
        bn.weight.zero_()
        bn.bias.zero_()
        return
    w = torch.zeros_like(layer.weight)
    if s.role == "proj" and s.block not in change.inserted_blocks:
        # Option B, a block whose shortcut was an identity: new channel j takes the input
        # channel that carried the same old channel.
        out_map, in_map = change.out_maps[s.id], change.in_maps[s.id]
        where = {c: i for i, c in enumerate(in_map) if c != FRESH}
        pairs = [(j, where[c]) for j, c in enumerate(out_map) if c in where]
    else:  # inserted conv / FC / projection of an inserted block: identity, channel by channel
        pairs = [(j, j) for j in range(min(w.shape[0], w.shape[1]))]
    if pairs:
        rows, cols = (_long(c).to(w.device) for c in zip(*pairs))
        w[(rows, cols) + (s.kernel // 2,) * (w.ndim - 2)] = 1.0
    layer.weight.copy_(w)
    if layer.bias is not None:
        layer.bias.zero_()
    _passthrough_bn(bn)


def _copy_layer(old: GrowNet, new: GrowNet, s: LayerShape, ix: _Index, init: str) -> None:
    o, n = getattr(old, s.id), getattr(new, s.id)
    w = _gather(o.weight.detach(), n.weight.detach(), ix)
    if init != "random":
        # New channels of the producer feed nothing yet (zero outgoing weights), so the
        # function is unchanged whatever those channels compute.
        w[:, ix.cols_fresh.to(w.device)] = 0
    n.weight.copy_(w)
    if n.bias is not None:
        n.bias.copy_(_gather(o.bias.detach(), n.bias.detach(), ix))
    if s.bn:
        ob, nb = getattr(old, bn_name(s.id)), getattr(new, bn_name(s.id))
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(nb, name).copy_(_gather(getattr(ob, name).detach(),
                                            getattr(nb, name).detach(), ix))
        nb.num_batches_tracked.copy_(ob.num_batches_tracked)


def _build(spec: ArchSpec, fresh_init: str, generator: torch.Generator | None) -> GrowNet:
    if generator is None:
        return build(spec, init=fresh_init)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build(spec, init=fresh_init)


def _layer_of(name: str) -> tuple[str, bool]:
    """``"s1_l0_bn.weight"`` -> ``("s1_l0", True)``: owning layer id, BatchNorm or not."""
    module = name.rsplit(".", 1)[0]
    return (module[:-3], True) if module.endswith("_bn") else (module, False)


def _carry_state(old: GrowNet, new: GrowNet, old_opt: torch.optim.Optimizer,
                 new_opt: torch.optim.Optimizer, index: dict[str, _Index]) -> None:
    """Per-parameter state by name: param-shaped tensors by index (new entries 0), others
    (``step``, ...) as they are. Inserted layers start with no state."""
    old_params = dict(old.named_parameters())
    for name, p in new.named_parameters():
        layer_id, _ = _layer_of(name)
        q = old_params.get(name)
        if q is None or layer_id not in index or q not in old_opt.state:
            continue
        carried = {}
        for k, v in old_opt.state[q].items():
            if isinstance(v, Tensor) and v.ndim > 0 and v.shape == q.shape:
                carried[k] = _gather(v, torch.zeros_like(p, dtype=v.dtype), index[layer_id],
                                     state=True)
            elif isinstance(v, Tensor):
                carried[k] = v.clone()
            else:
                carried[k] = v
        new_opt.state[p] = carried


def transplant(old_model: GrowNet, new_spec: ArchSpec, *, keep: Keep | None = None,
               init: str = "zero", split_from: Mapping[str, Sequence[int]] | None = None,
               old_optimizer: torch.optim.Optimizer | None = None,
               new_optimizer_factory: OptimizerFactory | None = None,
               generator: torch.Generator | None = None, fresh_init: str = "default",
               change: Change | None = None, into: GrowNet | None = None,
               ) -> tuple[GrowNet, torch.optim.Optimizer | None]:
    """Build ``new_spec`` and carry ``old_model``'s weights and optimizer state into it.

    Old filters (weights, biases), BatchNorm affine parameters and running statistics,
    and the next layers' input slices are copied by index (:func:`plan` says which
    channel goes where). Inserted layers start as identities: a conv gets a centred
    identity kernel and an FC layer an identity matrix, with BatchNorm passing through
    in eval mode; a residual block gets random convs and a zero last BatchNorm.

    Parameters
    ----------
    old_model
        The current model (from :func:`grownet.build`); its spec is the old spec.
    new_spec
        From :func:`widen`, :func:`deepen` and/or :func:`slim` applied to the old spec.
    keep
        The ``keep`` given to :func:`slim` (``None`` when nothing was removed).
    init
        New filters: ``"zero"`` (fresh random filters whose outgoing weights are zero:
        exact function), ``"split"`` (Net2Net: each new filter copies an old one with its
        BatchNorm entries, and all copies share the old outgoing weights equally: exact
        function; streams behind identity / zero-pad shortcuts use ``"zero"``), or
        ``"random"`` (fresh filters and fresh input slices: the reference behaviour, not
        function-preserving).
    split_from
        ``{layer id: old filter per new filter}`` for ``init="split"``; default: the
        largest-norm filters first.
    old_optimizer, new_optimizer_factory
        The factory builds the new optimizer from the new model (so the caller keeps its
        hyperparameters and groups). The old optimizer's per-parameter state is carried
        by parameter name: state tensors shaped like their parameter (momentum, DessiLBI's
        ``V`` and ``gamma``, ...) are sliced like it, new entries 0; other state (``step``)
        is copied as is. Inserted layers and split copies start at zero.
    generator
        Seeds the fresh initialisation of the new model (default: the global RNG).
    fresh_init
        How :func:`grownet.build` initialises fresh weights: ``"default"`` or ``"kaiming"``.
    change
        ``plan(old_model.spec, new_spec, keep)`` when the caller has it already.
    into
        A model of ``new_spec`` whose values the entries without an old source keep
        (a copy is changed, ``into`` is not); default: a freshly built one.

    Returns
    -------
    (GrowNet, Optimizer or None)
        The new model, on the old model's device and dtype and in its train/eval mode;
        the new optimizer when a factory was given.
    """
    if not isinstance(old_model, GrowNet):
        raise UserError("transplant needs a model built by grownet.build (it reads its spec); "
                        f"got {type(old_model).__name__}")
    if init not in INITS:
        raise UserError(f"unknown init {init!r}; use one of {', '.join(INITS)}")
    if old_optimizer is not None and new_optimizer_factory is None:
        raise UserError("pass new_optimizer_factory (model -> optimizer) to carry "
                        "old_optimizer's state into the new model")
    if change is None:
        change = plan(old_model.spec, new_spec, keep)
    ref = next(old_model.parameters())
    new_model = (_build(new_spec, fresh_init, generator) if into is None else
                 copy.deepcopy(into)).to(device=ref.device, dtype=ref.dtype)
    new_model.train(old_model.training)
    origins = _origins(change, old_model, init, split_from or {})
    index: dict[str, _Index] = {}
    with torch.no_grad():
        for s in new_spec.shapes():
            if s.id in change.inserted:
                _init_inserted(change, s, new_model)
            else:
                index[s.id] = _index(change, s, origins)
                _copy_layer(old_model, new_model, s, index[s.id], init)
    new_opt = None
    if new_optimizer_factory is not None:
        new_opt = new_optimizer_factory(new_model)
        if old_optimizer is not None:
            _carry_state(old_model, new_model, old_optimizer, new_opt, index)
    return new_model, new_opt
