"""Growth: the policy (when and how much) and the controller that applies it."""

from grownet.grow.controller import Decision, Grower, GrowthEvent, Unit, growable_units
from grownet.grow.policy import GrowthPolicy

__all__ = ["Decision", "GrowthEvent", "GrowthPolicy", "Grower", "Unit", "growable_units"]
