"""Validation mIoU handlers: pooled over images (model selection) and per-image (as papers often report it)."""

from __future__ import annotations

import torch
from monai.handlers import ConfusionMatrix, MeanIoUHandler

__all__ = ["ClassMeanIoUHandler", "PooledMeanIoUHandler"]


class ClassMeanIoUHandler(MeanIoUHandler):
    """:class:`monai.handlers.MeanIoUHandler` whose value is the mean over classes of per-class, per-image IoU.

    Images whose label lacks a class are skipped for that class (MONAI's ``ignore_empty=True``),
    so false positives on them do not count; :class:`PooledMeanIoUHandler` counts them.

    MONAI's ``reduction="mean"`` averages over all (image, class) pairs, so a class that is
    absent from some images (NaN there) weighs less. Papers, and our evaluation JSON
    (:class:`~monai_supmix.handlers.PerClassMetricsWriter`), average each class over the
    images first and then the classes; this handler reports that number so that the
    validation mIoU during training and the evaluation mIoU agree.
    """

    def __init__(self, include_background: bool = True, **kwargs) -> None:
        kwargs["reduction"] = "mean_batch"
        super().__init__(include_background=include_background, **kwargs)

    def compute(self) -> float:
        per_class = torch.as_tensor(super().compute(), dtype=torch.float32).reshape(-1)
        return float(torch.nanmean(per_class))


class PooledMeanIoUHandler(ConfusionMatrix):
    """Pooled mIoU: per-class IoU from the true/false positives and negatives summed over every image, then averaged over classes.

    A false positive on an image that lacks the class counts (it lowers that class's IoU), which
    :class:`ClassMeanIoUHandler` and MONAI's :class:`~monai.handlers.MeanIoUHandler` skip: their
    default ``ignore_empty=True`` leaves out every image whose label lacks the class. This is the
    number the bundles select ``model.pt`` on and the benchmark's claims use (``pooled_miou`` of
    :class:`~monai_supmix.handlers.PerClassMetricsWriter`). Built on MONAI's
    :class:`~monai.handlers.ConfusionMatrix` (``"threat score"`` = TP / (TP + FP + FN), counts summed
    over the batch axis); a class that never occurs, in the labels or the predictions, is skipped.

    Args:
        include_background: whether the background channel counts.
        output_transform: as for any MONAI metric handler (one-hot ``y_pred``, ``y``).
    """

    def __init__(self, include_background: bool = True, output_transform=lambda x: x, **kwargs) -> None:
        super().__init__(include_background=include_background, metric_name="threat score", compute_sample=False,
                         reduction="sum_batch", output_transform=output_transform, **kwargs)

    def compute(self) -> float:
        value = super().compute()
        per_class = torch.as_tensor(value[0] if isinstance(value, (list, tuple)) else value, dtype=torch.float32)
        return float(torch.nanmean(per_class.reshape(-1)))
