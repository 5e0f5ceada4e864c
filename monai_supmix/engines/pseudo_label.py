"""The pseudo-label loss as one component of the trainer: the loss on the mixed images, its weight and ramp-up."""

from __future__ import annotations

from collections.abc import Callable

import torch

from monai_supmix.handlers.rampup import RAMPUP_SCHEDULES, rampup_factor
from monai_supmix.losses import ConfidenceWeightedCELoss

__all__ = ["PseudoLabelLoss"]


class PseudoLabelLoss:
    """The student's loss on the teacher's (mixed) pseudo-labels, weighted and ramped up.

    The ramp-up factor also scales SUFD's adversarial term: both unsupervised terms start
    together once the teacher's pseudo-labels are worth learning from.

    Args:
        loss_function: ``f(logits, pseudo_label, confidence)``; default
            :class:`~monai_supmix.losses.ConfidenceWeightedCELoss` with threshold 0.9.
        weight: weight after ramp-up (0: supervised only, when there is no SUFD either).
        rampup_iterations: ramp-up length in iterations.
        rampup_schedule: ``"sigmoid"``, ``"linear"`` or ``"none"``.

    Raises:
        ValueError: for a negative weight or ramp-up length, or an unknown schedule.
    """

    def __init__(
        self,
        loss_function: Callable | None = None,
        weight: float = 1.0,
        rampup_iterations: int = 0,
        rampup_schedule: str = "sigmoid",
    ) -> None:
        if float(weight) < 0:
            raise ValueError(f"unsupervised_weight must be >= 0, got {weight!r}.")
        if int(rampup_iterations) < 0:
            raise ValueError(f"rampup_iterations must be >= 0, got {rampup_iterations!r}.")
        if rampup_schedule not in RAMPUP_SCHEDULES:
            raise ValueError(f"rampup_schedule must be one of {RAMPUP_SCHEDULES}, got {rampup_schedule!r}.")
        self.loss_function = loss_function or ConfidenceWeightedCELoss(0.9)
        self.weight = float(weight)
        self.rampup_iterations = int(rampup_iterations)
        self.rampup_schedule = rampup_schedule

    @property
    def threshold(self) -> float | None:
        """The confidence threshold of the loss function, when it has one (for the confident-fraction diagnostic)."""
        return getattr(self.loss_function, "threshold", None)

    def ramp(self, iteration: int) -> float:
        """The ramp-up factor in [0, 1] at a 0-based iteration."""
        return rampup_factor(iteration, self.rampup_iterations, self.rampup_schedule)

    def __call__(
        self, logits: torch.Tensor, pseudo_label: torch.Tensor, confidence: torch.Tensor,
        teacher_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The loss; ``teacher_mask`` (pixels whose pseudo-label is the teacher's, not pasted ground
        truth) reaches :class:`~monai_supmix.losses.ConfidenceWeightedCELoss` as its ``status_mask``
        (the pixels of its per-class learning status) and is not passed to any other
        ``f(logits, pseudo_label, confidence)``."""
        if teacher_mask is not None and isinstance(self.loss_function, ConfidenceWeightedCELoss):
            return self.loss_function(logits, pseudo_label, confidence, status_mask=teacher_mask)
        return self.loss_function(logits, pseudo_label, confidence)
