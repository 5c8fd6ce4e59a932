"""`slim`: a spec with fewer filters, keeping the given ones."""

from __future__ import annotations

from grownet.spec import ArchSpec, SpecError
from grownet.surgery._specedit import projections, with_widths
from grownet.surgery.change import Keep, normalise_keep, plan


def slim(spec: ArchSpec, keep: Keep) -> ArchSpec:
    """The spec with only the kept filters of some layers.

    Pass the same ``keep`` to :func:`grownet.surgery.transplant` to carry the kept
    filters, their BatchNorm entries, the matching input slices of the next layers and
    the optimizer state.

    Parameters
    ----------
    spec
        The architecture to slim.
    keep
        ``{layer id: indices of the filters kept}`` (a list or a LongTensor; order does
        not matter, the kept filters keep their relative order). For a residual stream
        name any of its convs (``<block>_conv2`` or ``<block>_proj``): the stream's
        convs share their channels. Layers not named keep all their filters.

    Returns
    -------
    ArchSpec

    Raises
    ------
    SpecError
        Unknown layer, the classifier, bad indices; members of one stream given
        different lists; a stream that drops channels its shortcut still carries in
        (option A, or an option-B identity shortcut: drop them from the stage's input
        too); or an option-B projection that would disappear because the widths on
        both sides of it become equal.
    """
    kept = normalise_keep(spec, keep)
    layers = {k: len(v) for k, v in kept.items() if not k.endswith(".stream")}
    streams = {k[:-len(".stream")]: len(v) for k, v in kept.items() if k.endswith(".stream")}
    if spec.shortcut == "A" and spec.stem is not None:
        up, up_w = spec.stem.id, layers.get(spec.stem.id, spec.stem.width)
        for st in spec.stages:
            w = streams.get(st.id, st.width)
            if w < up_w:
                raise SpecError(
                    f"slim: stage {st.id!r} would keep {w} channels, but the option-A shortcut "
                    f"carries all {up_w} kept channels of {up!r} into it; keep those channels "
                    f"in {st.id!r} too, or slim {up!r} as well")
            up, up_w = f"{st.id} stream", w
    new = with_widths(spec, layers, streams)
    lost = projections(spec) - projections(new)
    if lost:
        raise SpecError(f"slim would turn projection shortcut(s) {sorted(lost)} into identity "
                        "shortcuts (the widths on both sides become equal), which cannot keep "
                        "their weights; keep a different number of channels")
    plan(spec, new, keep)  # checks the shortcut rules of residual streams
    return new
