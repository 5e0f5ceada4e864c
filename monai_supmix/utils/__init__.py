"""Distributed set-up and tear-down, rank-aware helpers, atomic file writes."""

from .distributed import (
    all_reduce_sum,
    any_rank,
    init_distributed,
    is_main_rank,
    rank,
    register_distributed_cleanup,
    shutdown_distributed,
    unwrap_module,
)

__all__ = [
    "init_distributed",
    "is_main_rank",
    "register_distributed_cleanup",
    "shutdown_distributed",
    "rank",
    "any_rank",
    "all_reduce_sum",
    "unwrap_module",
]
