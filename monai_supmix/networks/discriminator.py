"""Sup-Unsup Feature Discriminator (SUFD)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers.factories import Conv
from torch import nn

__all__ = ["FeatureDiscriminator"]


class FeatureDiscriminator(nn.Module):
    """Fully-convolutional discriminator that tells labeled from unlabeled feature maps.

    The Sup-Unsup Feature Discriminator (SUFD) sees a feature map of the segmentation
    network and predicts, for every patch, whether it came from a labeled ("real",
    target 1) or an unlabeled ("fake", target 0) image. The segmentation network is
    then trained adversarially so that features of unlabeled images become
    indistinguishable from those of labeled images.

    It is named ``FeatureDiscriminator`` so as not to clash with
    :class:`monai.networks.nets.Discriminator` (an image-level classifier).

    Args:
        spatial_dims: number of spatial dimensions of the feature map (2 or 3).
        in_channels: number of channels of the tapped feature map.
        channels: output channels of each strided convolution block.
        strides: stride of each block (same length as ``channels``).
        kernel_size: convolution kernel size.
        negative_slope: slope of the LeakyReLU activations.
        spectral_norm: wrap every convolution in :func:`torch.nn.utils.spectral_norm`,
            which bounds the discriminator's Lipschitz constant and keeps the
            adversarial game stable.
        dropout: dropout probability after each block (0 disables it).

    Raises:
        ValueError: when ``spatial_dims`` is not 2 or 3, ``in_channels`` is not
            positive, or ``channels`` and ``strides`` differ in length.

    Example::

        disc = FeatureDiscriminator(spatial_dims=2, in_channels=32)
        logits = disc(torch.randn(4, 32, 48, 48))  # (4, 1, 12, 12) per-patch logits
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        channels: Sequence[int] = (64, 128, 128),
        strides: Sequence[int] = (2, 2, 1),
        kernel_size: int = 3,
        negative_slope: float = 0.2,
        spectral_norm: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}.")
        if int(in_channels) < 1:
            raise ValueError(f"in_channels must be a positive integer, got {in_channels!r}.")
        if len(channels) != len(strides):
            raise ValueError(
                f"channels and strides must have the same length, got {len(channels)} and {len(strides)}."
            )
        conv_type = Conv[Conv.CONV, spatial_dims]
        norm = nn.utils.spectral_norm if spectral_norm else (lambda module: module)
        layers: list[nn.Module] = []
        prev = int(in_channels)
        for out_ch, stride in zip(channels, strides):
            layers.append(norm(conv_type(prev, out_ch, kernel_size, stride=stride, padding=kernel_size // 2)))
            layers.append(nn.LeakyReLU(negative_slope, inplace=True))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            prev = out_ch
        layers.append(norm(conv_type(prev, 1, kernel_size, stride=1, padding=kernel_size // 2)))
        self.spatial_dims = spatial_dims
        self.in_channels = int(in_channels)
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Return per-patch logits (``B×1×spatial'``) for a ``B×C×spatial`` feature map.

        Raises:
            ValueError: when the feature map's dimensions or channels are not the expected ones.
        """
        if features.ndim != self.spatial_dims + 2 or features.shape[1] != self.in_channels:
            raise ValueError(
                f"FeatureDiscriminator expected features of shape (B, {self.in_channels}, "
                f"{'spatial, ' * self.spatial_dims}) but got {tuple(features.shape)}; check `in_channels` "
                "against the channels of the tapped layer."
            )
        return self.net(features)
