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
