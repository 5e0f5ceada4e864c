"""SUFD: logits-based adversarial losses (autocast-safe), label smoothing, warm-up, diagnostics."""

from __future__ import annotations

import pytest
import torch

from monai_supmix.engines import SUFD, adversarial_loss
from monai_supmix.networks import FeatureDiscriminator


def _sufd(**kwargs) -> SUFD:
    torch.manual_seed(0)
    disc = FeatureDiscriminator(2, 4, channels=(8,), strides=(2,))
    return SUFD(disc, torch.optim.SGD(disc.parameters(), lr=0.1), **kwargs)


@pytest.mark.parametrize("criterion", ["bce", "least_squares", "hinge"])
def test_adversarial_loss_is_autocast_safe(criterion):
    """MONAI's BCELoss-based loss fails under CUDA autocast; ours runs in float32 from logits (bf16 on CPU here)."""
    sufd = _sufd(criterion=criterion)
    features_l, features_u = torch.randn(2, 4, 16, 16), torch.randn(2, 4, 16, 16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = sufd.student_loss(features_u)
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert features_u.grad is not None and torch.isfinite(features_u.grad).all()
    out = sufd.discriminator_step(
        features_l, features_u.detach(), lambda: torch.autocast("cpu", dtype=torch.bfloat16), "raise"
    )
    assert set(out) == {"discriminator_loss", "discriminator_accuracy", "discriminator_coverage"}
    assert out["discriminator_coverage"] == 1.0  # no weight: every unlabeled patch seen
    assert 0.0 <= out["discriminator_accuracy"] <= 1.0


def test_bce_matches_the_definition_and_label_smoothing_moves_the_targets():
    logits = torch.tensor([[[[2.0, -1.0]]]])
    expected = torch.nn.functional.binary_cross_entropy(torch.sigmoid(logits), torch.ones_like(logits))
    torch.testing.assert_close(adversarial_loss(logits, True, "bce"), expected)
    smooth = torch.nn.functional.binary_cross_entropy(torch.sigmoid(logits), torch.full_like(logits, 0.9))
    torch.testing.assert_close(adversarial_loss(logits, True, "bce", smoothing=0.2), smooth)
    torch.testing.assert_close(adversarial_loss(-logits, False, "bce"), expected)


def test_discriminator_learns_to_separate_and_reports_accuracy():
    sufd = _sufd()
    features_l, features_u = torch.ones(4, 4, 8, 8), -torch.ones(4, 4, 8, 8)
    import contextlib

    accuracies = [
        sufd.discriminator_step(features_l, features_u, contextlib.nullcontext, "raise")["discriminator_accuracy"]
        for _ in range(30)
    ]
    assert accuracies[-1] == 1.0
    assert all(p.grad is None for p in sufd.discriminator.parameters())  # no gradient left behind


def test_warmup_and_arguments():
    sufd = _sufd(warmup_iterations=5)
    assert not sufd.active(4) and sufd.active(5)
    assert _sufd(input="unlabeled").needs_plain_pass and not _sufd(input="mixed").needs_plain_pass
    assert not sufd.needs_plain_pass  # the default, "mixed_masked", needs no extra student pass
    for kwargs, match in (({"input": "labeled"}, "discriminator_input"), ({"criterion": "wgan"}, "criterion"),
                          ({"weight": -1.0}, "adversarial_weight"), ({"label_smoothing": 1.0}, "label_smoothing"),
                          ({"paste_margin": -1}, "paste_margin")):
        with pytest.raises(ValueError, match=match):
            _sufd(**kwargs)


def test_collapse_warning():
    sufd = _sufd(collapse_patience=2)
    sufd._check_collapse(1.0)
    with pytest.warns(UserWarning, match="SUFD discriminator accuracy"):
        sufd._check_collapse(1.0)


def _mix_batch(classmix_mask=None, supmix_mask=None):
    from monai_supmix.engines import MixBatch

    zeros = torch.zeros(1, 1, 32, 32)
    return MixBatch(zeros, zeros.long(), zeros, zeros, zeros.long(), 2, classmix_mask=classmix_mask,
                    supmix_mask=supmix_mask)


def test_masked_input_leaves_out_pasted_ground_truth_and_paste_edges():
    sufd = _sufd(paste_margin=4)
    assert sufd.unlabeled_weight(_mix_batch()) is None  # nothing pasted: every pixel counts
    assert _sufd(input="unlabeled").unlabeled_weight(_mix_batch(supmix_mask=torch.ones(1, 1, 32, 32, dtype=bool))) is None
    classmix = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    classmix[..., :, 16:] = True  # ClassMix pasted the right half: one vertical edge between columns 15 and 16
    supmix = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    supmix[..., 2:4, 2:4] = True  # SupMix pasted a 2x2 ground-truth blob
    weight = sufd.unlabeled_weight(_mix_batch(classmix, supmix))
    assert weight.shape == (1, 1, 32, 32)
    assert weight[..., :, 15].sum() == 0 and weight[..., :, 16].sum() == 0  # both sides of the edge
    assert weight[..., 2:4, 2:4].sum() == 0  # the pasted ground truth
    assert weight[..., 20, 8] == 1 and weight[..., 20, 28] == 1  # far from both, inside either image
    # on the patch grid (32 -> 16 here), the margin of 4 pixels widens the exclusion by 2 patches
    from monai_supmix.engines.sufd import _patch_grid

    grid = _patch_grid(weight, torch.zeros(1, 1, 16, 16), margin=4)
    assert grid[..., 10, 5:11].sum() == 0 and grid[..., 10, 4] == 1 and grid[..., 10, 11] == 1
    assert grid[..., 0:4, 0:4].sum() == 0 and grid[..., 12, 0] == 1


def test_masked_losses_weigh_only_the_patches_left():
    sufd = _sufd(paste_margin=0)
    features_l = torch.ones(2, 4, 16, 16)
    features_u = -torch.ones(2, 4, 16, 16)
    features_u[..., :8] = 1.0  # the left half looks labeled, the right half does not
    weight = torch.zeros(2, 1, 16, 16)
    weight[..., 8:] = 1.0  # only the right half may be judged
    import contextlib

    for _ in range(30):
        out = sufd.discriminator_step(features_l, features_u, contextlib.nullcontext, "raise", weight)
    assert out["discriminator_coverage"] == pytest.approx(0.5)
    # judged only where it differs, the discriminator separates perfectly
    assert out["discriminator_accuracy"] == 1.0
    nothing = torch.zeros(2, 1, 16, 16)
    assert float(sufd.student_loss(features_u, nothing)) == 0.0  # no patch left: no adversarial term
    assert float(sufd.student_loss(features_u, weight)) > float(sufd.student_loss(features_l, weight))


def test_feature_pool_shrinks_what_the_discriminator_sees_and_the_mask_follows():
    sufd = _sufd(feature_pool=2, paste_margin=0)
    logits = torch.randn(2, 4, 16, 16)
    features = sufd.features(logits)
    assert features.shape == (2, 4, 8, 8)
    torch.testing.assert_close(features.sum(1), torch.ones(2, 8, 8))  # pooled softmax still sums to 1
    weight = torch.ones(2, 1, 16, 16)
    weight[..., :8] = 0  # the left half is masked at full resolution
    import contextlib

    out = sufd.discriminator_step(torch.rand(2, 4, 8, 8), features, contextlib.nullcontext, "raise", weight)
    assert out["discriminator_coverage"] == pytest.approx(0.5)  # half of the (4x4) patch grid
    with pytest.raises(ValueError, match="feature_pool"):
        _sufd(feature_pool=0)
