"""Small helpers for logging the trainer's output."""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["loss_terms", "LOSS_TERMS"]

#: Keys of ``engine.state.output`` that hold scalar loss terms and diagnostics.
LOSS_TERMS = (
    "loss",
    "supervised_loss",
    "unsupervised_loss",
    "adversarial_loss",
    "discriminator_loss",
    "discriminator_accuracy",
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
