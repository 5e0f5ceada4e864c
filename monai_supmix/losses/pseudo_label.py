"""Confidence-weighted loss on (mixed) pseudo-labels."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ConfidenceWeightedCELoss"]


class ConfidenceWeightedCELoss(nn.Module):
    """Cross-entropy on hard pseudo-labels, weighted per pixel by the teacher's confidence.

    Pixels whose confidence is below ``threshold`` get weight 0; the others get
    weight 1 (``soft=False``, FixMatch-style) or their confidence (``soft=True``).
    The sum is divided by the number of pixels, so a batch with few confident pixels
    contributes a proportionally smaller loss (the DACS/ClassMix weighting). Pixels
    pasted from ground truth by SupMix carry confidence 1 and always count.

    MONAI's losses take dense targets and no per-pixel weight map, hence this small
    module.

    Args:
        threshold: confidence threshold in [0, 1).
        soft: weight confident pixels by their confidence instead of 1.

    Raises:
        ValueError: for a threshold outside [0, 1).
    """

    def __init__(self, threshold: float = 0.9, soft: bool = False) -> None:
        super().__init__()
        if not 0.0 <= float(threshold) < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {threshold!r}.")
        self.threshold = float(threshold)
        self.soft = soft

    def weights(self, confidence: torch.Tensor) -> torch.Tensor:
        """Per-pixel weights for a ``B×1×spatial`` confidence map."""
        mask = (confidence >= self.threshold).to(confidence.dtype)
        return mask * confidence if self.soft else mask

    def forward(self, logits: torch.Tensor, target: torch.Tensor, confidence: torch.Tensor) -> torch.Tensor:
        """Return the weighted loss.

        Args:
            logits: student logits ``B×K×spatial``.
            target: pseudo-label index map ``B×1×spatial`` (integer).
            confidence: confidence map ``B×1×spatial`` in [0, 1].

        Raises:
            ValueError: when the spatial shapes differ.
        """
        if target.shape[2:] != logits.shape[2:] or confidence.shape != target.shape:
            raise ValueError(
                f"logits {tuple(logits.shape)}, target {tuple(target.shape)} and confidence "
                f"{tuple(confidence.shape)} must share batch and spatial shape (target/confidence with 1 channel)."
            )
        ce = F.cross_entropy(logits.float(), target[:, 0].long(), reduction="none")
        return (ce * self.weights(confidence[:, 0].float())).mean()
