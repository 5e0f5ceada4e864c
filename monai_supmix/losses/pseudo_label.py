"""Confidence-weighted loss on (mixed) pseudo-labels."""

from __future__ import annotations

import torch
from torch import nn
from monai.losses import MaskedDiceLoss
from torch.nn import functional as F

from monai_supmix.utils.distributed import all_reduce_sum

__all__ = ["ConfidenceWeightedCELoss"]


class ConfidenceWeightedCELoss(nn.Module):
    """Cross-entropy on hard pseudo-labels, weighted per pixel by the teacher's confidence.

    Pixels whose confidence is below the threshold get weight 0; the others get
    weight 1 (``soft=False``, FixMatch-style) or their confidence (``soft=True``).
    The sum is divided by the number of pixels, so a batch with few confident pixels
    contributes a proportionally smaller loss (the DACS/ClassMix weighting). Pixels
    pasted from ground truth by SupMix carry confidence 1 and always count.

    With ``class_adaptive=True`` each class gets its own threshold
    ``threshold * s_c / max_k s_k`` (at least ``min_threshold``), where ``s_c`` is a running
    mean of the teacher's confidence on the pixels it assigns to class ``c`` (FlexMatch's
    idea of per-class learning status): a class the teacher is less sure of (thin vessels,
    consolidation) is not filtered out wholesale while the frequent classes keep the full
    threshold. The status measures the teacher: pixels that are not its predictions (SupMix's
    pasted ground truth, confidence 1) are left out of it through ``status_mask``, else the
    pasted classes would look learnt and get their full threshold back.

    With ``dice_weight > 0`` a soft Dice term on the confident pixels
    (:class:`monai.losses.MaskedDiceLoss`, pooled over the batch) is added, so that the
    unsupervised loss has the same Dice + cross-entropy form as the usual supervised loss:
    cross-entropy alone is dominated by the background pixels that make up most of a
    pseudo-label, while Dice weighs every class alike.

    MONAI's cross-entropy losses take no per-pixel weight map, hence this small module.

    Args:
        threshold: confidence threshold in [0, 1).
        soft: weight confident pixels by their confidence instead of 1.
        class_adaptive: per-class thresholds from the teacher's running confidence.
        min_threshold: lower bound of the per-class thresholds.
        momentum: momentum of the running per-class confidence.
        dice_weight: weight of the masked Dice term (0: cross-entropy only).

    Raises:
        ValueError: for thresholds outside [0, 1), a momentum outside [0, 1) or a negative dice_weight.
    """

    def __init__(
        self,
        threshold: float = 0.9,
        soft: bool = False,
        class_adaptive: bool = False,
        min_threshold: float = 0.5,
        momentum: float = 0.99,
        dice_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if float(dice_weight) < 0:
            raise ValueError(f"dice_weight must be >= 0, got {dice_weight!r}.")
        for name, value in (("threshold", threshold), ("min_threshold", min_threshold), ("momentum", momentum)):
            if not 0.0 <= float(value) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}.")
        self.threshold = float(threshold)
        self.soft = soft
        self.class_adaptive = bool(class_adaptive)
        self.min_threshold = min(float(min_threshold), self.threshold)
        self.momentum = float(momentum)
        self.dice_weight = float(dice_weight)
        # one-hot targets are passed in: with ``to_onehot_y`` the mask would turn masked pixels into
        # background *before* the one-hot encoding, and Dice would then penalise them
        self.dice = MaskedDiceLoss(include_background=True, softmax=True, batch=True)
        self.register_buffer("class_confidence", torch.zeros(0), persistent=False)  # re-learnt after a resume

    def thresholds(self, num_classes: int) -> torch.Tensor:
        """Current threshold of every class (all ``threshold`` unless ``class_adaptive``)."""
        if not self.class_adaptive or self.class_confidence.numel() != num_classes:
            return torch.full((num_classes,), self.threshold)
        status = self.class_confidence / self.class_confidence.max().clamp_min(1e-6)
        return (self.threshold * status).clamp(min=self.min_threshold, max=self.threshold).cpu()

    @torch.no_grad()
    def _update_status(
        self, target: torch.Tensor, confidence: torch.Tensor, num_classes: int, keep: torch.Tensor | None = None
    ) -> None:
        index = target.reshape(-1).long()
        conf = confidence.reshape(-1).float()
        if keep is not None:  # the teacher's pixels only (an empty selection leaves the status as it is)
            keep = keep.reshape(-1)
            index, conf = index[keep], conf[keep]
        sums = torch.zeros(num_classes, device=conf.device).index_add_(0, index, conf)
        counts = torch.bincount(index, minlength=num_classes)[:num_classes].float()
        # summed over the ranks under torch.distributed, so that every rank keeps the same thresholds
        sums, counts = all_reduce_sum(torch.stack([sums, counts])).unbind(0)
        seen = counts > 0
        means = torch.where(seen, sums / counts.clamp_min(1), torch.zeros_like(sums)).cpu()
        if self.class_confidence.numel() != num_classes:
            self.class_confidence = torch.where(seen.cpu(), means, torch.full_like(means, self.threshold))
        else:
            blended = self.momentum * self.class_confidence + (1 - self.momentum) * means
            self.class_confidence = torch.where(seen.cpu(), blended, self.class_confidence)

    def weights(self, confidence: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        """Per-pixel weights for a ``B×spatial`` confidence map (and its pseudo-labels, per-class thresholds)."""
        if self.class_adaptive and target is not None and self.class_confidence.numel():
            tau = self.thresholds(self.class_confidence.numel()).to(confidence.device)[target.long()]
        else:
            tau = self.threshold
        mask = (confidence >= tau).to(confidence.dtype)
        return mask * confidence if self.soft else mask

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, confidence: torch.Tensor,
        status_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return the weighted loss.

        Args:
            logits: student logits ``B×K×spatial``.
            target: pseudo-label index map ``B×1×spatial`` (integer).
            confidence: confidence map ``B×1×spatial`` in [0, 1].
            status_mask: optional ``B×1×spatial`` bool map of the pixels whose confidence is the
                teacher's (default: all); only these update the per-class learning status of
                ``class_adaptive``. Every pixel still counts in the loss.

        Raises:
            ValueError: when the spatial shapes differ.
        """
        if target.shape[2:] != logits.shape[2:] or confidence.shape != target.shape:
            raise ValueError(
                f"logits {tuple(logits.shape)}, target {tuple(target.shape)} and confidence "
                f"{tuple(confidence.shape)} must share batch and spatial shape (target/confidence with 1 channel)."
            )
        if status_mask is not None and status_mask.shape != target.shape:
            raise ValueError(f"status_mask {tuple(status_mask.shape)} must have the target's shape {tuple(target.shape)}.")
        if self.class_adaptive and self.training:
            keep = None if status_mask is None else status_mask[:, 0].bool()
            self._update_status(target[:, 0], confidence[:, 0], logits.shape[1], keep)
        ce = F.cross_entropy(logits.float(), target[:, 0].long(), reduction="none")
        weights = self.weights(confidence[:, 0].float(), target[:, 0])
        loss = (ce * weights).mean()
        if self.dice_weight > 0:
            mask = (weights > 0).unsqueeze(1).to(logits.dtype)
            onehot = F.one_hot(target[:, 0].long(), logits.shape[1]).movedim(-1, 1).float()
            loss = loss + self.dice_weight * self.dice(logits.float(), onehot, mask=mask.float())
        return loss
