"""Process-wide console behaviour of the bundles (log filters), installed by the bundle layer, never by a constructor."""

from __future__ import annotations

import logging

from monai_supmix.engines.utils import FreshStartLogFilter

__all__ = ["install_log_filters", "ENGINE_LOGGERS"]

#: Ignite's loggers of the bundles' trainer and evaluator.
ENGINE_LOGGERS = ("ignite.engine.engine.SemiSupervisedTrainer", "ignite.engine.engine.SupervisedEvaluator")


def install_log_filters() -> bool:
    """Reword Ignite's "resuming from iteration 0" on a fresh start, for the bundles' engines (idempotent)."""
    for name in ENGINE_LOGGERS:
        FreshStartLogFilter.install(logging.getLogger(name))
    return True
