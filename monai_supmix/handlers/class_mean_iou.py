"""mIoU as segmentation papers report it: per-class IoU averaged over images, then over classes."""

from __future__ import annotations

import torch
from monai.handlers import MeanIoUHandler

__all__ = ["ClassMeanIoUHandler"]


class ClassMeanIoUHandler(MeanIoUHandler):
    """:class:`monai.handlers.MeanIoUHandler` whose value is the mean over classes of per-class IoU.

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
