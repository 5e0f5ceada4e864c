"""Handlers and schedules for the semi-supervised workflow."""

from .class_mean_iou import ClassMeanIoUHandler, PooledMeanIoUHandler
from .checkpointing import (
    AtomicCheckpointSaver,
    attach_resumable_checkpoints,
    latest_checkpoint,
    prune_checkpoints,
    remove_partial_files,
)
from .metrics_writer import PerClassMetricsWriter, summarise_per_class, write_json_atomic
from .progress import TrainingProgressBar, every_n_iterations
from .rampup import RAMPUP_SCHEDULES, rampup_factor

__all__ = [
    "ClassMeanIoUHandler",
    "PooledMeanIoUHandler",
    "RAMPUP_SCHEDULES",
    "rampup_factor",
    "TrainingProgressBar",
    "every_n_iterations",
    "AtomicCheckpointSaver",
    "prune_checkpoints",
    "attach_resumable_checkpoints",
    "latest_checkpoint",
    "remove_partial_files",
    "PerClassMetricsWriter",
    "summarise_per_class",
    "write_json_atomic",
]
