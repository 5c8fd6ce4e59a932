"""grownet: grow compact convolutional networks from scratch with DessiLBI.

The names users import live here; everything else may move.
"""

from grownet import dst
from grownet.cost import ComputeMeter, CostTable, count, latency, training_compute
from grownet.data import DATASETS, Dataset, DeviceLoader, load_dataset, make_loaders
from grownet.deploy import LoadedNet, load
from grownet.errors import UserError
from grownet.graph import arch_graph, draw_graph, save_graph
from grownet.grow import Grower, GrowthEvent, GrowthPolicy
from grownet.nets import GrowNet, build
from grownet.optim import (
    DessiLBI,
    lam_for_entry,
    lbi_param_groups,
    nu_for_entry,
    typical_filter_norm,
)
from grownet.path import SupportTracker
from grownet.prune import Selection, by_percent, prune_run, slim_network, ticket
from grownet.spec import PRESETS, ArchSpec, Block, Layer, SpecError, Stage
from grownet.surgery import deepen, plan, slim, transplant, widen

__all__ = [
    "ArchSpec", "Block", "ComputeMeter", "CostTable", "DATASETS", "Dataset", "DessiLBI",
    "DeviceLoader", "GrowNet", "GrowthEvent", "GrowthPolicy", "Grower", "Layer", "PRESETS",
    "SpecError", "Stage", "SupportTracker", "UserError", "arch_graph", "build", "count",
    "deepen", "draw_graph", "latency", "lbi_param_groups", "load_dataset", "make_loaders",
    "nu_for_entry", "plan", "save_graph", "slim", "training_compute", "transplant",
    "typical_filter_norm", "widen", "Selection", "by_percent", "prune_run", "slim_network",
    "ticket", "dst", "lam_for_entry", "LoadedNet", "load",
]
__version__ = "0.1.0"
