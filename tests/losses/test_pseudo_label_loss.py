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


def test_class_adaptive_thresholds_follow_the_teachers_confidence_per_class():
    """A class the teacher is less sure of gets a lower threshold (down to min_threshold); the frequent keeps 0.9."""
    loss = ConfidenceWeightedCELoss(0.9, class_adaptive=True, min_threshold=0.5, momentum=0.0)
    target = torch.tensor([[[[0, 0, 1, 1]]]])
    confidence = torch.tensor([[[[0.95, 0.95, 0.6, 0.6]]]])
    logits = torch.zeros(1, 2, 1, 4)
    loss(logits, target, confidence)  # learns the per-class status from this batch
    tau = loss.thresholds(2)
    assert tau[0] == pytest.approx(0.9) and tau[1] == pytest.approx(0.9 * 0.6 / 0.95)
    # class 1's pixels at confidence 0.6 now count, which a fixed 0.9 threshold would drop
    weights = loss.weights(confidence[:, 0], target[:, 0])
    assert weights.tolist() == [[[1.0, 1.0, 1.0, 1.0]]]
    fixed = ConfidenceWeightedCELoss(0.9)
    assert fixed.weights(confidence[:, 0], target[:, 0]).tolist() == [[[1.0, 1.0, 0.0, 0.0]]]
    floor = ConfidenceWeightedCELoss(0.9, class_adaptive=True, min_threshold=0.8, momentum=0.0)
    floor(logits, target, confidence)
    assert floor.thresholds(2)[1] == pytest.approx(0.8)


def test_dice_weight_adds_a_masked_dice_term_on_confident_pixels():
    target = torch.tensor([[[[0, 1, 1, 0]]]])
    confidence = torch.tensor([[[[1.0, 1.0, 1.0, 0.0]]]])
    good = torch.tensor([[[[4.0, -4.0, -4.0, 0.0]], [[-4.0, 4.0, 4.0, 0.0]]]])
    bad = -good
    ce_only, with_dice = ConfidenceWeightedCELoss(0.5), ConfidenceWeightedCELoss(0.5, dice_weight=1.0)
    for logits in (good, bad):
        assert float(with_dice(logits, target, confidence)) > float(ce_only(logits, target, confidence))
    # Dice separates a right from a wrong prediction much more than the small difference on good ones
    assert float(with_dice(bad, target, confidence) - ce_only(bad, target, confidence)) > 0.5
    assert float(with_dice(good, target, confidence) - ce_only(good, target, confidence)) < 0.1
    # the unconfident pixel does not count: changing its logits changes nothing
    other = good.clone()
    other[..., 3] = torch.tensor([-9.0, 9.0])[:, None, None].squeeze(-1)
    torch.testing.assert_close(with_dice(other, target, confidence), with_dice(good, target, confidence))


def test_status_mask_keeps_pasted_ground_truth_out_of_the_learning_status():
    """SupMix's pasted pixels (confidence 1) would make their class look learnt and restore its full threshold."""
    target = torch.tensor([[[[0, 0, 1, 1, 1, 1]]]])
    confidence = torch.tensor([[[[0.95, 0.95, 0.6, 0.6, 1.0, 1.0]]]])
    teacher = torch.tensor([[[[True, True, True, True, False, False]]]])
    logits = torch.zeros(1, 2, 1, 6)
    everything = ConfidenceWeightedCELoss(0.9, class_adaptive=True, min_threshold=0.5, momentum=0.0)
    everything(logits, target, confidence)
    assert everything.thresholds(2)[1] == pytest.approx(0.9 * 0.8 / 0.95)  # the pasted pixels lift class 1
    masked = ConfidenceWeightedCELoss(0.9, class_adaptive=True, min_threshold=0.5, momentum=0.0)
    loss = masked(logits, target, confidence, status_mask=teacher)
    assert masked.thresholds(2)[1] == pytest.approx(0.9 * 0.6 / 0.95)  # the teacher's own confidence only
    # every pixel still counts in the loss itself (class 1's teacher pixels pass the lowered threshold)
    torch.testing.assert_close(loss, F.cross_entropy(logits, target[:, 0]))
    # a batch of pasted pixels only leaves the status as it was
    masked(logits, target, confidence, status_mask=torch.zeros_like(teacher))
    assert masked.thresholds(2)[1] == pytest.approx(0.9 * 0.6 / 0.95)
    with pytest.raises(ValueError, match="status_mask"):
        masked(logits, target, confidence, status_mask=teacher[..., :3])
