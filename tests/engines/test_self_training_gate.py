import math

import pytest
import torch

from monai_supmix.engines import SelfTrainingGate


def _logits_of(labels: torch.Tensor, num_classes: int = 3) -> torch.Tensor:
    """Logits whose arg-max is ``labels`` (``B×H×W`` class indices)."""
    return torch.nn.functional.one_hot(labels, num_classes).permute(0, 3, 1, 2).float() * 5.0


def _labels() -> torch.Tensor:
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    labels[0, 2:4, 2:4] = 1  # class 1 in the first patch only
    labels[1, 5:7, 1:3] = 2
    return labels


def test_opens_when_the_student_finds_every_labeled_class():
    labels = _labels()
    running, ready = SelfTrainingGate(0.5)(_logits_of(labels), labels[:, None], None)
    assert running == [1.0, 1.0] and ready


def test_stays_closed_while_the_student_predicts_background_everywhere():
    labels = _labels()
    background = _logits_of(torch.zeros_like(labels))
    gate = SelfTrainingGate(0.5, momentum=0.5)
    running, ready = gate(background, labels[:, None], None)
    assert running == [0.0, 0.0] and not ready
    # one perfect batch lifts the running Dice to 0.5 with momentum 0.5: the gate opens at min_dice 0.5
    running, ready = gate(_logits_of(labels), labels[:, None], running)
    assert running == [0.5, 0.5] and ready
    assert not SelfTrainingGate(0.6, momentum=0.5)(_logits_of(labels), labels[:, None], [0.0, 0.0])[1]


def test_dice_counts_only_the_patches_that_hold_the_class():
    labels = _labels()
    pred = labels.clone()
    pred[1, 0, 0] = 1  # a false positive of class 1 in the patch without class 1: not counted
    pred[0, 2, 2] = 0  # one missed pixel of class 1 in the patch with it: 3 of 4 found
    running, _ = SelfTrainingGate()(_logits_of(pred), labels[:, None], None)
    assert running[0] == pytest.approx(2 * 3 / (4 + 3)) and running[1] == 1.0


def test_classes_not_seen_yet_do_not_count_and_one_hot_targets_work():
    labels = _labels()
    labels[labels == 2] = 0  # no class 2 in this batch
    one_hot = torch.nn.functional.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    running, ready = SelfTrainingGate()(_logits_of(labels), one_hot, None)
    assert running[0] == 1.0 and math.isnan(running[1]) and ready
    # a class seen before keeps its running value in a batch without it
    running, _ = SelfTrainingGate()(_logits_of(labels), labels[:, None], [1.0, 0.2])
    assert running == [1.0, 0.2]
    # nothing seen at all: closed
    empty = torch.zeros(1, 1, 8, 8, dtype=torch.long)
    running, ready = SelfTrainingGate()(_logits_of(empty[:, 0]), empty, None)
    assert all(math.isnan(v) for v in running) and not ready


def test_3d_patches():
    labels = torch.zeros(1, 4, 4, 4, dtype=torch.long)
    labels[0, 1:3, 1:3, 1:3] = 1
    logits = torch.nn.functional.one_hot(labels, 2).permute(0, 4, 1, 2, 3).float()
    assert SelfTrainingGate()(logits, labels[:, None], None) == ([1.0], True)


def test_bad_arguments_name_what_was_expected():
    with pytest.raises(ValueError, match="min_dice must be in"):
        SelfTrainingGate(0.0)
    with pytest.raises(ValueError, match="momentum must be in"):
        SelfTrainingGate(0.5, momentum=1.0)
    labels = _labels()
    with pytest.raises(ValueError, match="target has 2 channels"):
        SelfTrainingGate()(_logits_of(labels), torch.zeros(2, 2, 8, 8), None)
    with pytest.raises(ValueError, match="running has 1 values"):
        SelfTrainingGate()(_logits_of(labels), labels[:, None], [0.5])
