"""Dynamic Sparse Training (Liu et al., ICLR 2020): masked conv/linear layers whose
per-filter thresholds are trained with the weights (ALGORITHMS.md, Part B).

Typical use::

    from grownet import build, dst

    model = dst.convert(build(spec))                  # s1_l0.weight, s1_l0.threshold, ...
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for x, y in loader:
        loss = F.cross_entropy(model(x), y) + dst.sparsity_loss(model, alpha=5e-4)
        opt.zero_grad(); loss.backward(); opt.step()
    print(dst.keep_ratios(model), dst.overall_sparsity(model))
    small_spec, small_model = dst.slim_masked(spec, model.eval())

``KeepPacer`` steers alpha to a keep ratio asked for (``grownet train --method dst
--keep 0.05``); ``docs/dst.md`` has the details (the estimator, the dead-layer guard,
slimming rules).
"""

from grownet.dst.convert import (
    convert,
    keep_ratios,
    kept_counts,
    kept_filters,
    masked_layers,
    masks,
    overall_sparsity,
    sparsity_loss,
    threshold_penalty,
    weighted_keep_of,
)
from grownet.dst.keeper import SPARSEST_TOLERANCE, BestKeeper
from grownet.dst.layers import (
    DEAD_RATIO,
    MaskedConv2d,
    MaskedLayer,
    MaskedLinear,
    long_tail,
    step_long_tail,
)
from grownet.dst.pacing import KeepPacer, keep_target
from grownet.dst.slim import SLIMMABLE_ROLES, bake, slim_masked

__all__ = ["DEAD_RATIO", "SLIMMABLE_ROLES", "SPARSEST_TOLERANCE", "BestKeeper", "KeepPacer",
           "MaskedConv2d", "MaskedLayer", "MaskedLinear", "bake", "convert", "keep_ratios",
           "keep_target", "kept_counts", "kept_filters", "long_tail", "masked_layers", "masks",
           "overall_sparsity", "slim_masked", "sparsity_loss", "step_long_tail",
           "threshold_penalty", "weighted_keep_of"]
