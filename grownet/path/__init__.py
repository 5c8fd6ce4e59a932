"""The support tracker: which groups of Γ are selected, since when, layer by layer.

:class:`SupportTracker` follows a :class:`~grownet.optim.DessiLBI` optimizer along its
regularisation path. After every optimizer step (a step post-hook) it reads Γ and
updates, on the device, the boolean support of every group (a filter / neuron row
for ``"filter"`` layers, an element for ``"element"`` layers) and the step at which
each group first entered. :meth:`SupportTracker.end_epoch` stamps entry epochs and
records the epoch's support, so tickets can later be cut from the support at any
epoch. Nothing synchronises with the device until a caller reads a result.
"""

from grownet.path.census import Census
from grownet.path.layout import NEVER_EPOCH
from grownet.path.tracker import SupportTracker

__all__ = ["NEVER_EPOCH", "Census", "SupportTracker"]
