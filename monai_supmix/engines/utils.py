"""Small helpers for logging the trainer's output."""

from __future__ import annotations

import logging
import math
import re
from typing import Any

import torch

__all__ = ["loss_terms", "LOSS_TERMS", "FreshStartLogFilter"]

#: Keys of ``engine.state.output`` that hold scalar loss terms and diagnostics.
LOSS_TERMS = (
    "loss",
    "supervised_loss",
    "unsupervised_loss",
    "adversarial_loss",
    "discriminator_loss",
    "discriminator_accuracy",
    "discriminator_coverage",
    "confident_fraction",
    "unsupervised_weight",
    "adversarial_weight",
)


def loss_terms(output: Any) -> dict[str, float]:
    """``output_transform`` for ``StatsHandler``/``TensorBoardStatsHandler``: every scalar term.

    Terms that are not defined in a configuration (e.g. the discriminator's accuracy
    without SUFD) are left out rather than logged as NaN.
    """
    if isinstance(output, list):  # decollated output: terms are identical per item
        output = output[0]
    terms = {}
    for key in LOSS_TERMS:
        if key in output:
            value = output[key]
            value = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
            if not math.isnan(value):
                terms[key] = value
    return terms


class FreshStartLogFilter(logging.Filter):
    """Reword Ignite's "Engine run resuming from iteration 0, epoch 0 until N epochs" for a run that starts fresh.

    Ignite logs every start as a resume, which reads as if an old run were being
    continued; a real resume (from a checkpoint, iteration > 0) keeps Ignite's message.
    """

    _FRESH = re.compile(r"Engine run resuming from iteration 0, epoch 0 until (\d+ \w+)")

    def filter(self, record: logging.LogRecord) -> bool:
        match = self._FRESH.match(str(record.msg))
        if match:
            record.msg, record.args = f"Engine run starting: {match.group(1)}", ()
        return True

    @classmethod
    def install(cls, logger: logging.Logger) -> None:
        """Add the filter to ``logger`` once."""
        if not any(isinstance(f, cls) for f in logger.filters):
            logger.addFilter(cls())
