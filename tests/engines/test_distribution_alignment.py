"""DistributionAlignment: the teacher's class probabilities rescaled towards the labeled class shares."""

from __future__ import annotations

import pytest
import torch

from monai_supmix.engines import DistributionAlignment


def _probs(vessel_share: float, shape=(2, 2, 8, 8)) -> torch.Tensor:
    probs = torch.empty(shape)
    probs[:, 1] = vessel_share
    probs[:, 0] = 1 - vessel_share
    return probs


def test_a_shrinking_class_is_lifted_back_to_its_labeled_share():
    # the labeled pixels are 20 % vessel, the teacher predicts 5 % on average: the first call starts the
    # running mean at 5 %, the rescaled probabilities then average the labeled share
    aligned, running = DistributionAlignment()(_probs(0.05), torch.tensor([800.0, 200.0]), None)
    assert running == pytest.approx([0.95, 0.05])
    assert aligned[:, 1].mean().item() == pytest.approx(0.2, abs=1e-5)
    torch.testing.assert_close(aligned.sum(1), torch.ones(2, 8, 8))


def test_no_change_when_the_teacher_matches_the_prior():
    probs = torch.softmax(torch.randn(2, 3, 6, 6), dim=1)
    prior = probs.mean(dim=(0, 2, 3))
    aligned, _ = DistributionAlignment()(probs, prior * 1000, None)
    torch.testing.assert_close(aligned, probs, rtol=1e-4, atol=1e-5)


def test_the_running_mean_moves_with_its_momentum():
    align = DistributionAlignment(momentum=0.9)
    _, running = align(_probs(0.5), torch.tensor([1.0, 1.0]), [0.9, 0.1])
    assert running == pytest.approx([0.9 * 0.9 + 0.1 * 0.5, 0.9 * 0.1 + 0.1 * 0.5])


def test_bad_arguments_name_what_was_expected():
    with pytest.raises(ValueError, match="momentum must be in"):
        DistributionAlignment(momentum=1.0)
    with pytest.raises(ValueError, match=r"prior has 3 values, expected one per class \(2\)"):
        DistributionAlignment()(_probs(0.1), torch.ones(3), None)
    with pytest.raises(ValueError, match="running mean has 1 values"):
        DistributionAlignment()(_probs(0.1), torch.ones(2), [1.0])
