"""Growth: the policy (when and how much) and the controller that applies it."""

from grownet.grow.controller import Grower, GrowthEvent, Unit, growable_units
from grownet.grow.policy import GrowthPolicy

__all__ = ["GrowthEvent", "GrowthPolicy", "Grower", "Unit", "growable_units"]
