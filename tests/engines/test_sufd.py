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
    assert set(out) == {"discriminator_loss", "discriminator_accuracy"}
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
    assert sufd.needs_plain_pass and not _sufd(input="mixed").needs_plain_pass
    for kwargs, match in (({"input": "labeled"}, "discriminator_input"), ({"criterion": "wgan"}, "criterion"),
                          ({"weight": -1.0}, "adversarial_weight"), ({"label_smoothing": 1.0}, "label_smoothing")):
        with pytest.raises(ValueError, match=match):
            _sufd(**kwargs)


def test_collapse_warning():
    sufd = _sufd(collapse_patience=2)
    sufd._check_collapse(1.0)
    with pytest.warns(UserWarning, match="SUFD discriminator accuracy"):
        sufd._check_collapse(1.0)
