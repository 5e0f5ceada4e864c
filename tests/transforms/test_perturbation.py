"""Strong photometric perturbation of the student's view."""

from __future__ import annotations

import pytest
import torch

from monai_supmix.transforms import BatchPerturbation, strong_perturbation


@pytest.mark.parametrize("preset, channels", [("fundus", 3), ("ct", 1)])
def test_perturbation_changes_intensities_not_geometry(preset, channels):
    images = torch.rand(4, channels, 32, 32)
    images[:, :, :, :16] = 0.0  # a dark left half: the geometry must survive
    out = BatchPerturbation(strong_perturbation(preset), seed=0)(images)
    assert out.shape == images.shape and out.dtype == images.dtype and type(out) is torch.Tensor
    assert float((out - images).abs().mean()) > 0.01
    assert bool(((out >= 0) & (out <= 1)).all())
    left, right = out[..., :16].mean(), out[..., 16:].mean()
    assert left < right


def test_perturbation_is_reproducible_and_per_image():
    images = torch.rand(3, 1, 16, 16)
    perturb = BatchPerturbation(strong_perturbation("ct"), seed=0)
    first = perturb.set_random_state(seed=7)(images)
    second = perturb.set_random_state(seed=7)(images)
    torch.testing.assert_close(first, second)
    same = images[0:1].repeat(3, 1, 1, 1)
    varied = perturb(same)
    assert not torch.allclose(varied[0], varied[1]) or not torch.allclose(varied[1], varied[2])


def test_strength_zero_and_bad_arguments():
    images = torch.rand(2, 1, 16, 16)
    torch.testing.assert_close(BatchPerturbation(strong_perturbation("ct", strength=0.0), seed=0)(images), images)
    with pytest.raises(ValueError, match="preset"):
        strong_perturbation("mri")
    with pytest.raises(ValueError, match="strength"):
        strong_perturbation("ct", strength=-1)
    with pytest.raises(ValueError, match="B×C×spatial"):
        BatchPerturbation(strong_perturbation("ct"))(torch.rand(16))
