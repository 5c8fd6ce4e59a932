"""Architecture specs: the network's shape as frozen, JSON-serialisable data."""

from grownet.spec.model import HEAD_ID, ArchSpec, Block, Layer, SpecError, Stage
from grownet.spec.presets import NARROW_PRESETS, PRESETS, preset
from grownet.spec.shapes import INPUT, LayerShape, resolve

__all__ = ["ArchSpec", "Block", "HEAD_ID", "INPUT", "Layer", "LayerShape", "NARROW_PRESETS",
           "PRESETS", "SpecError", "Stage", "preset", "resolve"]
