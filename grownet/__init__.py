"""grownet: grow compact convolutional networks from scratch with DessiLBI."""

from grownet.errors import UserError
from grownet.nets import GrowNet, build
from grownet.spec import PRESETS, ArchSpec, Block, Layer, SpecError, Stage

__all__ = ["ArchSpec", "Block", "GrowNet", "Layer", "PRESETS", "SpecError", "Stage",
           "UserError", "build"]
__version__ = "0.1.0"
