"""Each bundle's metadata.json says what its configs do (method keys, shapes, classes, versions, measured numbers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import monai_supmix

REPO = Path(__file__).resolve().parents[2]
#: the keys that define the bundle's default method, mirrored in metadata.json's "supmix" section
METHOD_KEYS = ("mix", "supmix_classes", "supmix_prob", "supmix_within_region", "supmix_feather_sigma",
               "supmix_flip_source", "classmix_classes", "strong_perturbation", "perturbation_strength", "sufd",
               "feature_layer", "adversarial_weight", "discriminator_input", "paste_margin", "discriminator_channels",
               "discriminator_pool",
               "discriminator_label_smoothing", "unsupervised_weight", "confidence_threshold", "class_adaptive_threshold",
               "ema_decay")


def _load(bundle: str, name: str) -> dict:
    with open(REPO / "bundles" / bundle / "configs" / name) as f:
        return json.load(f)


@pytest.mark.parametrize("bundle", ["chase", "covid19"])
def test_metadata_matches_the_configs(bundle):
    meta, train = _load(bundle, "metadata.json"), _load(bundle, "train.json")
    assert {k: train[k] for k in METHOD_KEYS} == meta["supmix"]
    assert meta["version"] in meta["changelog"] and max(meta["changelog"], key=lambda v: tuple(map(int, v.split(".")))) == meta["version"]
    assert meta["required_packages_version"]["monai_supmix"] == monai_supmix.__version__
    image = meta["network_data_format"]["inputs"]["image"]
    pred = meta["network_data_format"]["outputs"]["pred"]
    assert image["num_channels"] == train["in_channels"] and image["spatial_shape"] == train["patch_size"]
    assert pred["num_channels"] == train["num_classes"] and pred["spatial_shape"] == train["patch_size"]
    assert list(pred["channel_def"].values()) == train["class_names"]
    numbers = [v for v in meta["eval_metrics"].values() if isinstance(v, (int, float))]
    assert numbers and all(0 < v < 1 for v in numbers)  # measured values, not a pointer to a document
    assert isinstance(meta["eval_metrics"].get("how_measured"), str)
