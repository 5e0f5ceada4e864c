"""Networks for SUFD: the feature discriminator and feature taps."""

from .discriminator import FeatureDiscriminator
from .feature_tap import DEFAULT_FEATURE_LAYERS, FeatureTap, default_feature_layer, feature_channels

__all__ = [
    "FeatureDiscriminator",
    "FeatureTap",
    "DEFAULT_FEATURE_LAYERS",
    "default_feature_layer",
    "feature_channels",
]
