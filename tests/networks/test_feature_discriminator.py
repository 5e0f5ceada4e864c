"""FeatureDiscriminator and FeatureTap."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import BasicUNet, UNet

from monai_supmix.networks import DEFAULT_FEATURE_LAYERS, FeatureDiscriminator, FeatureTap, feature_channels


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("spectral_norm", [True, False])
def test_patch_logits_shape(dims, spectral_norm):
    disc = FeatureDiscriminator(dims, 8, channels=(16, 16), strides=(2, 2), spectral_norm=spectral_norm)
    out = disc(torch.randn(2, 8, *(16,) * dims))
    assert out.shape == (2, 1, *(4,) * dims)


def test_spectral_norm_wraps_convolutions():
    disc = FeatureDiscriminator(2, 4, channels=(8,), strides=(2,), spectral_norm=True)
    assert any(hasattr(m, "weight_orig") for m in disc.modules())


def test_bad_arguments():
    with pytest.raises(ValueError, match="spatial_dims"):
        FeatureDiscriminator(1, 4)
    with pytest.raises(ValueError, match="same length"):
        FeatureDiscriminator(2, 4, channels=(8, 8), strides=(2,))
    with pytest.raises(ValueError, match=r"expected features of shape \(B, 4"):
        FeatureDiscriminator(2, 4)(torch.randn(1, 5, 8, 8))


@pytest.mark.parametrize(
    "net, in_channels",
    [
        (UNet(2, 1, 2, channels=(8, 16, 32), strides=(2, 2), num_res_units=1), 1),
        (BasicUNet(2, 1, 2, features=(4, 4, 8, 8, 16, 4)), 1),
    ],
)
def test_default_tap_and_channels(net, in_channels):
    tap = FeatureTap(net)
    assert tap.layer_name == DEFAULT_FEATURE_LAYERS[type(net).__name__]
    net(torch.randn(2, in_channels, 32, 32))
    feats = tap.pop()
    assert feats.shape[0] == 2 and feats.requires_grad
    assert feats.shape[1] == feature_channels(net, None, in_channels, (32, 32))
    # a loss on the tapped features alone reaches the layers before the tap, not the head after it
    feats.square().mean().backward()
    head = {id(p) for p in (net.model[2] if isinstance(net, UNet) else net.final_conv).parameters()}
    before = [p for p in net.parameters() if id(p) not in head]
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in before)
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0 for p in net.parameters() if id(p) in head)
    tap.remove()


def test_wrong_layer_lists_valid_names():
    net = UNet(2, 1, 2, channels=(8, 16), strides=(2,))
    with pytest.raises(ValueError, match="valid names: model, model.0"):
        FeatureTap(net, "decoder.3")


def test_tap_through_ddp_wrapper_name_lookup():
    net = UNet(2, 1, 2, channels=(8, 16), strides=(2,))
    wrapped = torch.nn.DataParallel(net)
    tap = FeatureTap(wrapped, "model.1")
    wrapped(torch.randn(1, 1, 16, 16))
    assert tap.pop().shape[1] == feature_channels(net, "model.1", 1, (16, 16))


def test_a_patch_logit_sees_only_its_receptive_field():
    """What SUFD's paste margin relies on: a patch logit does not change when far-away pixels do.

    The bundles' discriminator (two stride-2 3x3 blocks and a 3x3 head) has a receptive field of
    15 pixels (3, then 3 + 2·2, then 7 + 2·4), so a margin of 8 pixels around paste edges
    (rounded up to whole 4-pixel patches) keeps edges out of the patches that are judged.
    """
    torch.manual_seed(0)
    disc = FeatureDiscriminator(2, 2, channels=(32, 64), strides=(2, 2)).eval()
    x = torch.rand(1, 2, 96, 96)
    with torch.no_grad():
        base = disc(x)
        far = x.clone()
        far[..., 60:, 60:] = torch.rand(1, 2, 36, 36)  # change the bottom-right corner only
        changed = disc(far)
    assert base.shape == (1, 1, 24, 24)
    diff = (base - changed).abs()[0, 0]
    assert diff[:10, :10].max() == 0  # patches 0-9 (pixels < 40 plus their field) never see the corner
    assert diff[16:, 16:].max() > 0  # patches over the corner do
