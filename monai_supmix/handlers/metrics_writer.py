"""Per-class IoU / Dice of an evaluation, written to a JSON file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence

import torch
from ignite.engine import Engine, Events
from monai.handlers import from_engine
from monai.metrics import DiceMetric, MeanIoU
from monai.utils import evenly_divisible_all_gather

__all__ = ["PerClassMetricsWriter", "write_json_atomic", "summarise_per_class"]


def write_json_atomic(obj: object, path: str) -> None:
    """Write ``obj`` as JSON to ``path`` through a temporary file and a rename."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600 files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def summarise_per_class(per_image: torch.Tensor, class_names: Sequence[str]) -> dict[str, float]:
    """Mean over images of a ``N×C`` per-image metric, ignoring NaN (class absent in image and prediction)."""
    values = {}
    for c, name in enumerate(class_names):
        col = per_image[:, c]
        col = col[~torch.isnan(col)]
        values[name] = float(col.mean()) if col.numel() else float("nan")
    return values


class PerClassMetricsWriter:
    """Collect per-image, per-class IoU and Dice during an evaluation and write them as JSON.

    MONAI's ``MeanIoUHandler``/``MeanDice`` give the mean; this handler keeps every
    class (the minority classes are the point of SupMix) and writes
    ``{"miou", "mean_dice", "iou": {class: v}, "dice": {class: v}, "num_images"}``
    atomically at the end of the run. The metric computation itself is
    :class:`monai.metrics.MeanIoU` and :class:`monai.metrics.DiceMetric` on one-hot
    ``pred``/``label`` (restrict them to a field of view in the postprocessing, e.g.
    with ``MaskIntensityd``). Results are gathered across ranks; rank 0 writes.

    Args:
        output_file: JSON file to write (its folder is created).
        class_names: names of the classes, in channel order.
        output_transform: maps ``engine.state.output`` to ``(pred, label)``.
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
        self.results: dict | None = None

    def attach(self, engine: Engine) -> None:
        """Register the handler on ``engine`` (an evaluator)."""
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._update)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self.iou.reset()
        self.dice.reset()

    def _update(self, engine: Engine) -> None:
        pred, label = self.output_transform(engine.state.output)
        self.iou(y_pred=pred, y=label)
        self.dice(y_pred=pred, y=label)

    def _write(self, engine: Engine) -> None:
        iou = evenly_divisible_all_gather(self.iou.get_buffer(), concat=True)
        dice = evenly_divisible_all_gather(self.dice.get_buffer(), concat=True)
        if iou.shape[1] != len(self.class_names):
            raise ValueError(
                f"class_names has {len(self.class_names)} names but the predictions have {iou.shape[1]} channels."
            )
        per_iou = summarise_per_class(iou.float().cpu(), self.class_names)
        per_dice = summarise_per_class(dice.float().cpu(), self.class_names)
        finite = [v for v in per_iou.values() if v == v]
        finite_dice = [v for v in per_dice.values() if v == v]
        self.results = {
            "miou": sum(finite) / len(finite) if finite else float("nan"),
            "mean_dice": sum(finite_dice) / len(finite_dice) if finite_dice else float("nan"),
            "iou": per_iou,
            "dice": per_dice,
            "num_images": int(iou.shape[0]),
            **self.extra,
        }
        if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
            write_json_atomic(self.results, self.output_file)
