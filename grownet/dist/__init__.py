"""torchrun / DDP helpers: rank-0 decisions broadcast, re-wrap after a structural change."""

from grownet.dist.context import DistContext, context_from_env, launched_by_torchrun, unwrap

__all__ = ["DistContext", "context_from_env", "launched_by_torchrun", "unwrap"]
