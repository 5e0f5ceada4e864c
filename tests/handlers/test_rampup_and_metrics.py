"""Ramp-ups, the per-class metrics writer and the class-mean IoU handler."""

import json
import math

import pytest
import torch
from ignite.engine import Engine

from monai_supmix.handlers import ClassMeanIoUHandler, PerClassMetricsWriter, rampup_factor


def test_rampups():
    assert rampup_factor(0, 10, "linear") == 0.0
    assert rampup_factor(5, 10, "linear") == 0.5
    assert rampup_factor(20, 10, "linear") == 1.0
    assert rampup_factor(0, 10, "sigmoid") == pytest.approx(math.exp(-5))
    assert rampup_factor(10, 10, "sigmoid") == 1.0
    assert rampup_factor(3, 0, "sigmoid") == 1.0
    with pytest.raises(ValueError, match="rampup schedule"):
        rampup_factor(1, 10, "cosine")


def _onehot(index, k=2):
    return torch.nn.functional.one_hot(index, k).permute(2, 0, 1).float()


def _batches():
    # image 1: class 1 present and half right; image 2: class 1 absent everywhere
    gt1 = torch.tensor([[0, 1], [1, 0]])
    pr1 = torch.tensor([[0, 1], [0, 0]])
    gt2 = torch.zeros(2, 2, dtype=torch.long)
    return [([_onehot(pr1)], [_onehot(gt1)]), ([_onehot(gt2)], [_onehot(gt2)])]


def test_per_class_writer_and_class_mean_iou(tmp_path):
    out = tmp_path / "m.json"
    engine = Engine(lambda e, b: {"pred": b[0], "label": b[1]})
    writer = PerClassMetricsWriter(str(out), ["bg", "fg"], output_transform=lambda o: (o["pred"], o["label"]))
    writer.attach(engine)
    metric = ClassMeanIoUHandler(output_transform=lambda o: (o["pred"], o["label"]))
    metric.attach(engine, "miou")
    engine.run(_batches())
    result = json.loads(out.read_text())
    # bg: image 1 IoU 2/3, image 2 IoU 1; fg: image 1 IoU 1/2, image 2 empty (NaN, ignored)
    assert result["iou"]["bg"] == pytest.approx((2 / 3 + 1) / 2)
    assert result["iou"]["fg"] == pytest.approx(0.5)
    assert result["miou"] == pytest.approx(((2 / 3 + 1) / 2 + 0.5) / 2)
    assert engine.state.metrics["miou"] == pytest.approx(result["miou"])
    assert result["num_images"] == 2


def test_per_class_writer_pools_counts_and_keeps_false_positives(tmp_path):
    """Pooled IoU counts a false positive on an image without the class; per-image counts are kept."""
    from monai.data import MetaTensor

    out = tmp_path / "m.json"
    gt1, pr1 = torch.tensor([[0, 1], [1, 0]]), torch.tensor([[0, 1], [0, 0]])
    gt2, pr2 = torch.zeros(2, 2, dtype=torch.long), torch.tensor([[1, 0], [0, 0]])  # a false positive
    batches = [
        ([_onehot(pr1)], [MetaTensor(_onehot(gt1), meta={"filename_or_obj": "/x/a.png"})]),
        ([_onehot(pr2)], [MetaTensor(_onehot(gt2), meta={"filename_or_obj": "/x/b.png"})]),
    ]
    engine = Engine(lambda e, b: {"pred": b[0], "label": b[1]})
    writer = PerClassMetricsWriter(str(out), ["bg", "fg"], output_transform=lambda o: (o["pred"], o["label"]))
    writer.attach(engine)
    engine.run(batches)
    result = json.loads(out.read_text())
    assert [i["id"] for i in result["per_image"]] == ["a.png", "b.png"]
    assert result["per_image"][0] == {"id": "a.png", "tp": [2, 1], "fp": [1, 0], "fn": [0, 1]}
    assert result["per_image"][1] == {"id": "b.png", "tp": [3, 0], "fp": [0, 1], "fn": [1, 0]}
    # fg pooled: tp 1, fp 1, fn 1 -> 1/3; the per-image mean ignores image b (empty label): 1/2
    assert result["pooled_iou"]["fg"] == pytest.approx(1 / 3)
    assert result["iou"]["fg"] == pytest.approx(0.5)
    assert result["pooled_iou"]["bg"] == pytest.approx(5 / 7)
    assert result["pooled_miou"] == pytest.approx((5 / 7 + 1 / 3) / 2)
    # Inf-Net Dice: only image a contains fg: 2*1 / (2*1 + 0 + 1)
    assert result["infnet_dice"]["fg"] == pytest.approx(2 / 3)


def test_pooled_mean_iou_counts_false_positives_on_images_without_the_class(tmp_path):
    """The model-selection metric equals the writer's pooled mIoU; the per-image one ignores the false positive."""
    from monai_supmix.handlers import PooledMeanIoUHandler

    gt1, pr1 = torch.tensor([[0, 1], [1, 0]]), torch.tensor([[0, 1], [0, 0]])
    gt2, pr2 = torch.zeros(2, 2, dtype=torch.long), torch.tensor([[1, 0], [0, 0]])  # fg predicted where there is none
    batches = [([_onehot(pr1)], [_onehot(gt1)]), ([_onehot(pr2)], [_onehot(gt2)])]
    out = tmp_path / "m.json"
    engine = Engine(lambda e, b: {"pred": b[0], "label": b[1]})
    PerClassMetricsWriter(str(out), ["bg", "fg"], output_transform=lambda o: (o["pred"], o["label"])).attach(engine)
    PooledMeanIoUHandler(output_transform=lambda o: (o["pred"], o["label"])).attach(engine, "pooled")
    ClassMeanIoUHandler(output_transform=lambda o: (o["pred"], o["label"])).attach(engine, "per_image")
    engine.run(batches)
    # pooled: bg TP 2+3, FP 1, FN 1 -> 5/7; fg TP 1, FP 1 (image 2), FN 1 -> 1/3
    expected = (5 / 7 + 1 / 3) / 2
    assert engine.state.metrics["pooled"] == pytest.approx(expected)
    assert json.loads(out.read_text())["pooled_miou"] == pytest.approx(expected)
    assert engine.state.metrics["per_image"] > expected  # image 2's false positive is not counted there


def test_progress_bar_routes_console_logs_through_tqdm_while_running_and_restores_them():
    import logging
    import sys

    from monai_supmix.handlers.progress import TrainingProgressBar

    root = logging.getLogger()
    console = logging.StreamHandler(sys.stderr)
    root.addHandler(console)
    seen = []

    def step(engine, batch):
        seen.append([type(h).__name__ for h in root.handlers])
        return {"loss": torch.tensor(1.0)}

    try:
        engine = Engine(step)
        TrainingProgressBar().attach(engine)
        engine.run([0, 1], max_epochs=1)
        assert all("_TqdmLoggingHandler" in names and "StreamHandler" not in names for names in seen)
        assert console in root.handlers  # the console handler is back after the run
        failing = Engine(lambda e, b: (_ for _ in ()).throw(RuntimeError("boom")))
        TrainingProgressBar().attach(failing)
        with pytest.raises(RuntimeError, match="boom"):
            failing.run([0], max_epochs=1)
        assert console in root.handlers  # restored on the way out of an error too
    finally:
        root.removeHandler(console)
