"""Per-class IoU / Dice of an evaluation (per image and pooled), written to a JSON file."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch
from ignite.engine import Engine, Events
from monai.handlers import from_engine
from monai.metrics import DiceMetric, MeanIoU, get_confusion_matrix
from monai.utils import evenly_divisible_all_gather, string_list_all_gather

from monai_supmix.utils.files import write_json_atomic

__all__ = ["PerClassMetricsWriter", "write_json_atomic", "summarise_per_class", "pooled_scores", "infnet_dice"]


def summarise_per_class(per_image: torch.Tensor, class_names: Sequence[str]) -> dict[str, float]:
    """Mean over images of a ``N×C`` per-image metric, ignoring NaN (class absent in image and prediction)."""
    means = torch.nanmean(per_image.float(), dim=0)
    return {name: float(means[c]) for c, name in enumerate(class_names)}


def _image_id(items: Sequence[object], index: int) -> str:
    """The file an evaluated item came from (``MetaTensor`` metadata of the first item that has it), else its position."""
    for item in items:
        name = (getattr(item, "meta", None) or {}).get("filename_or_obj")
        if isinstance(name, (list, tuple)):
            name = name[0] if name else None
        if name:
            return os.path.basename(str(name))
    return f"#{index}"


def pooled_scores(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dataset-level IoU and Dice per class from ``N×C×3`` true-positive / false-positive / false-negative counts.

    Counts are summed over the images first, so false positives on images that lack a
    class count (unlike MONAI's per-image ``MeanIoU(ignore_empty=True)``). A class that is
    absent from every label and every prediction scores NaN.
    """
    tp, fp, fn = counts.double().sum(0).unbind(-1)
    iou = tp / (tp + fp + fn)
    dice = 2 * tp / (2 * tp + fp + fn)
    return iou, dice


def infnet_dice(counts: torch.Tensor) -> torch.Tensor:
    """Per class, the mean per-image Dice over the images whose label contains the class (Inf-Net's convention)."""
    tp, fp, fn = counts.double().unbind(-1)
    present = (tp + fn) > 0
    dice = 2 * tp / (2 * tp + fp + fn).clamp_min(1)
    return torch.stack(
        [dice[present[:, c], c].mean() if present[:, c].any() else torch.tensor(float("nan"), dtype=torch.float64)
         for c in range(counts.shape[1])]
    )


class PerClassMetricsWriter:
    """Collect per-image, per-class IoU and Dice during an evaluation and write them as JSON.

    MONAI's ``MeanIoUHandler``/``MeanDice`` give one mean; :class:`monai.handlers.MetricsSaver`
    (``metric_details``) writes per-image CSV tables of one metric at a time. This handler
    keeps what a comparison of methods needs in one JSON file: every class (the minority
    classes are the point of SupMix), the metrics pooled over the whole set (dataset-level
    IoU, which counts false positives on images without the class), and per image the
    confusion counts from :func:`monai.metrics.get_confusion_matrix`, from which any
    metric of a subset of images can be recomputed (paired bootstrap over images). The
    per-image means are :class:`monai.metrics.MeanIoU` / :class:`monai.metrics.DiceMetric`
    with MONAI's default ``ignore_empty=True``. Restrict the metrics to a field of view in
    the postprocessing (``MaskIntensityd``): masked pixels count for no class.

    Written keys: ``miou`` / ``mean_dice`` / ``iou`` / ``dice`` (per class: the mean over
    images of the per-image value, images without the class in label and prediction
    skipped), ``pooled_miou`` / ``pooled_iou`` / ``pooled_dice`` (dataset level),
    ``infnet_dice`` (per class, mean per-image Dice over the images that contain the class),
    ``per_image`` (``[{"id", "tp", "fp", "fn"}]``, lists in class order), ``class_names``
    and ``num_images``. Results are gathered across ranks; rank 0 writes atomically.

    Args:
        output_file: JSON file to write (its folder is created).
        class_names: names of the classes, in channel order.
        output_transform: maps ``engine.state.output`` to ``(pred, label)`` (one-hot).
        extra: additional fields written into the JSON (e.g. the checkpoint path).
    """

    def __init__(
        self,
        output_file: str,
        class_names: Sequence[str],
        output_transform: Callable = from_engine(["pred", "label"]),
        extra: dict | None = None,
    ) -> None:
        self.output_file = output_file
        self.class_names = list(class_names)
        self.output_transform = output_transform
        self.extra = dict(extra or {})
        self.iou = MeanIoU(include_background=True, reduction="none")
        self.dice = DiceMetric(include_background=True, reduction="none")
        self.counts: list[torch.Tensor] = []
        self.ids: list[str] = []
        self.results: dict | None = None

    def attach(self, engine: Engine) -> None:
        """Register the handler on ``engine`` (an evaluator)."""
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._update)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self.iou.reset()
        self.dice.reset()
        self.counts, self.ids = [], []

    def _update(self, engine: Engine) -> None:
        pred, label = self.output_transform(engine.state.output)
        self.iou(y_pred=pred, y=label)
        self.dice(y_pred=pred, y=label)
        preds = pred if isinstance(pred, (list, tuple)) else list(pred)
        labels = label if isinstance(label, (list, tuple)) else list(label)
        for p, y in zip(preds, labels):
            matrix = get_confusion_matrix(torch.as_tensor(p)[None], torch.as_tensor(y)[None], include_background=True)
            # [tp, fp, tn, fn] per class -> tp, fp, fn
            self.counts.append(matrix[0][:, [0, 1, 3]].round().long().cpu())
            self.ids.append(_image_id((p, y), len(self.ids)))  # the prediction carries the image's file

    def _write(self, engine: Engine) -> None:
        iou = evenly_divisible_all_gather(self.iou.get_buffer(), concat=True)
        dice = evenly_divisible_all_gather(self.dice.get_buffer(), concat=True)
        if iou.shape[1] != len(self.class_names):
            raise ValueError(
                f"class_names has {len(self.class_names)} names but the predictions have {iou.shape[1]} channels."
            )
        local = torch.stack(self.counts) if self.counts else torch.zeros(0, len(self.class_names), 3, dtype=torch.long)
        counts = evenly_divisible_all_gather(local, concat=True)
        ids = string_list_all_gather(self.ids)
        per_iou = summarise_per_class(iou.float().cpu(), self.class_names)
        per_dice = summarise_per_class(dice.float().cpu(), self.class_names)
        pooled_iou, pooled_dice = pooled_scores(counts)
        infnet = infnet_dice(counts)
        self.results = {
            "miou": _nanmean(per_iou.values()),
            "mean_dice": _nanmean(per_dice.values()),
            "iou": per_iou,
            "dice": per_dice,
            "pooled_miou": _nanmean(pooled_iou.tolist()),
            "pooled_iou": dict(zip(self.class_names, pooled_iou.tolist())),
            "pooled_dice": dict(zip(self.class_names, pooled_dice.tolist())),
            "infnet_dice": dict(zip(self.class_names, infnet.tolist())),
            "class_names": self.class_names,
            "num_images": int(iou.shape[0]),
            "per_image": [
                {"id": name, "tp": c[:, 0].tolist(), "fp": c[:, 1].tolist(), "fn": c[:, 2].tolist()}
                for name, c in zip(ids, counts)
            ],
            **self.extra,
        }
        if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
            write_json_atomic(self.results, self.output_file)


def _nanmean(values) -> float:
    """Mean over the values that are not NaN (NaN when none is); float64, as the JSON keeps them."""
    return float(torch.nanmean(torch.tensor([float(v) for v in values], dtype=torch.float64)))
