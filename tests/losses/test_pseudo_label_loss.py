"""ConfidenceWeightedCELoss."""

import pytest
import torch
from torch.nn import functional as F

from monai_supmix.losses import ConfidenceWeightedCELoss


def test_only_confident_pixels_count():
    logits = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 1, 4, 4))
    conf = torch.rand(2, 1, 4, 4)
    loss = ConfidenceWeightedCELoss(threshold=0.5)(logits, target, conf)
    ce = F.cross_entropy(logits, target[:, 0], reduction="none")
    expected = (ce * (conf[:, 0] >= 0.5)).mean()
    torch.testing.assert_close(loss, expected)


def test_soft_weighting_and_errors():
    logits, target = torch.randn(1, 2, 3, 3), torch.zeros(1, 1, 3, 3, dtype=torch.long)
    conf = torch.full((1, 1, 3, 3), 0.8)
    soft = ConfidenceWeightedCELoss(0.5, soft=True)(logits, target, conf)
    hard = ConfidenceWeightedCELoss(0.5)(logits, target, conf)
    torch.testing.assert_close(soft, 0.8 * hard)
    assert ConfidenceWeightedCELoss(0.9)(logits, target, conf) == 0
    with pytest.raises(ValueError, match="threshold"):
        ConfidenceWeightedCELoss(1.0)
    with pytest.raises(ValueError, match="must share"):
        ConfidenceWeightedCELoss()(logits, target[..., :2], conf)
