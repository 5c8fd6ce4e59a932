"""`widen`: a spec with more filters in one layer (or one residual stream)."""

from __future__ import annotations

from grownet.spec import HEAD_ID, ArchSpec, LayerShape, SpecError
from grownet.surgery._specedit import as_width, later_stages, projections, with_widths


def widen(spec: ArchSpec, layer_id: str, new_width: int) -> ArchSpec:
    """The spec with layer ``layer_id`` widened to ``new_width`` filters.

    New filters are appended after the old ones (channel ``i`` stays channel ``i``).
    Use :func:`grownet.surgery.plan` on the two specs to see every layer that changed,
    and :func:`grownet.surgery.transplant` to build the widened model with the old
    weights.

    Parameters
    ----------
    spec
        The architecture to widen.
    layer_id
        A plain conv, a hidden FC layer, the residual ``stem``, a block's ``<block>_conv1``
        (the block's inner width), or a block's ``<block>_conv2`` / ``<block>_proj``:
        these write the stage's residual stream, so they widen the stream, i.e. every
        conv2 (and projection) of that stage.
    new_width
        The new number of filters, at least the current one (equal: no change).

    Returns
    -------
    ArchSpec
        The widened spec. Residual rules, so that widening always succeeds and stays
        function-preserving with ``transplant(init="zero")``:

        * option A: a stream continues its input's channels through the zero-pad
          shortcut, so widening the stem or a stream by ``d`` also widens every later
          stream by ``d`` (their new channels sit at the same positions);
        * option B: a projection shortcut appears where widths start to differ (it is
          inserted with an identity initialisation). Where a width change would make a
          projection disappear (the widths become equal again), the width grows by one
          more, since the projection's learned weights cannot be replaced exactly.

    Raises
    ------
    SpecError
        Unknown layer, the classifier, or a ``new_width`` below the current width.
    """
    s = spec.shape(layer_id)  # SpecError naming the known layers
    if s.role == "head":
        raise SpecError(f"the classifier {HEAD_ID!r} has num_classes outputs and cannot be "
                        "widened; widen a hidden layer, or add one with "
                        "deepen(spec, 'hidden', position)")
    new_width = as_width(new_width, f"widen({layer_id!r}): new_width")
    if new_width < s.out_ch:
        raise SpecError(f"widen({layer_id!r}, {new_width}) would shrink the layer from "
                        f"{s.out_ch} filters; use slim(spec, keep={{{layer_id!r}: [...]}}) to "
                        "remove filters")
    if new_width == s.out_ch:
        return spec
    before = projections(spec)
    out = _widened(spec, s, new_width - s.out_ch)
    while before - projections(out):  # option B only: keep every projection
        out = _widened(spec, s, out.shape(layer_id).out_ch + 1 - s.out_ch)
    return out


def _widened(spec: ArchSpec, s: LayerShape, delta: int) -> ArchSpec:
    layers: dict[str, int] = {}
    streams: dict[str, int] = {}
    if s.role in ("conv2", "proj"):
        streams[s.stage] = s.out_ch + delta
    else:
        layers[s.id] = s.out_ch + delta
    if spec.shortcut == "A" and s.role in ("stem", "conv2", "proj"):
        # The zero-pad shortcut carries channel p of a stream into channel p of the next:
        # the d new channels need d new channels at the same positions downstream.
        for st in later_stages(spec, s):
            streams[st.id] = st.width + delta
    return with_widths(spec, layers, streams)
