"""Utilities shared by the engine, the bundles, the MONAI Label app and the benchmarks."""

from .distributed import init_distributed, is_main_rank, register_distributed_cleanup, shutdown_distributed

__all__ = ["init_distributed", "is_main_rank", "register_distributed_cleanup", "shutdown_distributed"]
