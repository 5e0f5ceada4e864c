"""Losses for semi-supervised training."""

from .pseudo_label import ConfidenceWeightedCELoss

__all__ = ["ConfidenceWeightedCELoss"]
