"""FeaturePerturbation: channel dropout on a hidden layer for the mixed images' rows of the student's pass."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import BasicUNet, UNet

from monai_supmix.engines import FeaturePerturbation, bottleneck_layer


def _unet():
    torch.manual_seed(0)
    return UNet(2, 1, 2, channels=(4, 8, 16), strides=(2, 2), num_res_units=1)


def test_default_layers_are_the_bottlenecks():
    assert bottleneck_layer(_unet()) == "model.1.submodule.1.submodule"
    assert bottleneck_layer(BasicUNet(2, 1, 2, features=(4, 4, 8, 8, 16, 4))) == "down_4"
    with pytest.raises(ValueError, match="no default feature-perturbation layer for Linear"):
        bottleneck_layer(torch.nn.Linear(2, 2))


def test_only_the_given_rows_change_and_only_in_training():
    net = _unet().train()
    x = torch.rand(4, 1, 16, 16)
    with torch.no_grad():
        clean = net(x)
    perturbation = FeaturePerturbation(0.5)
    perturbation.attach(net)
    torch.manual_seed(1)
    with torch.no_grad():
        assert torch.allclose(net(x), clean, atol=1e-6)  # outside on_rows: untouched (instance norm is per image)
        with perturbation.on_rows(2, 4):
            out = net(x)
    torch.testing.assert_close(out[:2], clean[:2], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out[2:], clean[2:], atol=1e-3)
    net.eval()
    with torch.no_grad(), perturbation.on_rows(0, 4):
        evaluated = net(x)
    with torch.no_grad():
        perturbation.remove()
        torch.testing.assert_close(evaluated, net(x))


def test_gradients_flow_through_the_perturbed_rows():
    net = _unet().train()
    perturbation = FeaturePerturbation(0.5)
    perturbation.attach(net)
    with perturbation.on_rows(1, 2):
        net(torch.rand(2, 1, 16, 16))[1].sum().backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in net.parameters())


def test_bad_arguments():
    for p in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match=r"p must be in \(0, 1\)"):
            FeaturePerturbation(p)
    with pytest.raises(ValueError, match="'decoder.9' is not a submodule of UNet; valid names: model, model.0"):
        FeaturePerturbation(0.5, "decoder.9").attach(_unet())


def test_the_generator_decides_the_dropped_channels():
    """The trainer passes its rank-aware stream: the same seed drops the same channels, another seed others."""
    net = _unet().train()
    perturbation = FeaturePerturbation(0.5)
    perturbation.attach(net)
    x = torch.rand(2, 1, 16, 16)

    def run(seed):
        with torch.no_grad(), perturbation.on_rows(0, 2, torch.Generator().manual_seed(seed)):
            return net(x)

    torch.testing.assert_close(run(3), run(3))
    assert not torch.allclose(run(3), run(4))
