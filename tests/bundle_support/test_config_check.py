"""Config validation of the bundles' top-level keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monai_supmix.bundle import check_config, task_datalists, validate_values
from monai_supmix.bundle.config_check import KEY_SCHEMA

CONFIGS = Path(__file__).resolve().parents[2] / "bundles" / "chase" / "configs"


def _config(**overrides):
    with open(CONFIGS / "train.json") as f:
        config = json.load(f)
    config.update(overrides)
    return config


def test_shipped_config_is_valid():
    assert check_config(_config(), str(CONFIGS))


def test_unknown_key_is_named_with_suggestion():
    with pytest.raises(ValueError, match=r"`num_labled` \(did you mean `num_labeled`\?\)"):
        check_config(_config(num_labled=3), str(CONFIGS))


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("num_labeled", 0, "`num_labeled`: expected an integer >= 1"),
        ("num_labeled", "4", "`num_labeled`: expected an integer >= 1"),
        ("sufd", "false", "`sufd`: expected true or false"),
        ("mix", "cutmix", "`mix`: expected one of"),
        ("learning_rate", -1, "`learning_rate`: expected a positive number"),
        ("confidence_threshold", 1.5, "`confidence_threshold`"),
        ("supmix_prob", 2, "`supmix_prob`"),
        ("discriminator_input", "labeled", "`discriminator_input`"),
        ("ema_decay", 1.0, "`ema_decay`"),
        ("patch_size", [8, 8], "`patch_size`"),
        ("supmix_classes", [2], r"`supmix_classes`: expected a non-empty list of class indices in \[0, 1\]"),
        ("supmix_classes", [], "`supmix_classes`"),
        ("supmix_classes", "rarer", "`supmix_classes`"),
    ],
)
def test_bad_values_name_the_key(key, value, message):
    with pytest.raises(ValueError, match=message):
        validate_values(_config(**{key: value}))


@pytest.mark.parametrize("key", sorted(KEY_SCHEMA))
def test_every_schema_key_is_a_bundle_key_and_refuses_a_wrong_type(key):
    """The schema describes keys the bundles have (``scale`` is CHASE's, ``spatial_size`` COVID-19's)."""
    in_bundles = [json.loads((CONFIGS.parents[1] / b / "configs" / "train.json").read_text()) for b in ("chase", "covid19")]
    assert any(key in config for config in in_bundles), f"{key} is in KEY_SCHEMA but in no bundle's train.json"
    config = next(c for c in in_bundles if key in c)
    validate_values({k: v for k, v in config.items() if k != "dataset_dir"})  # the shipped value passes
    with pytest.raises(ValueError, match=rf"config key `{key}`: expected .+, got \{{'a': 1\}}"):
        validate_values({key: {"a": 1}})


def test_missing_dataset_dir():
    with pytest.raises(FileNotFoundError, match="`dataset_dir`"):
        validate_values(_config(dataset_dir="/no/such/dir"))


def test_expressions_are_not_checked():
    validate_values(_config(num_labeled="@other_key", mix="$'none'"))


def test_num_labeled_larger_than_data(tmp_path):
    from monai_supmix.data import write_chase_phantoms

    root = write_chase_phantoms(str(tmp_path / "chase"), num_images=6, size=(64, 64))
    with pytest.raises(ValueError, match=r"num_labeled \(5\) \+ num_val \(2\) is larger than the 6"):
        task_datalists("chase", root, num_labeled=5, num_val=2)
    split = task_datalists("chase", root, num_labeled=2, num_val=2)
    assert [i["id"] for i in split["labeled"]] == ["Image_01L", "Image_01R"]
    assert [i["id"] for i in split["validation"]] == ["Image_03L", "Image_03R"]
    assert all("label" not in i for i in split["unlabeled"]) and len(split["unlabeled"]) == 2


def test_datalist_file(tmp_path):
    content = {"labeled": [{"image": f"{i}.png", "label": f"{i}_l.png"} for i in range(3)], "unlabeled": [{"image": "u.png", "label": "leak.png"}]}
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps(content))
    split = task_datalists("chase", datalist_file=str(path), num_val=1)
    assert len(split["labeled"]) == 2 and len(split["validation"]) == 1
    assert split["unlabeled"] == [{"image": "u.png"}]
    with pytest.raises(ValueError, match="non-empty 'labeled' list"):
        task_datalists("chase", datalist_file={"unlabeled": []})


def test_unlabeled_intensity_ratio_leaves_out_images_of_another_window(tmp_path, caplog):
    """`unlabeled_intensity_ratio` > 0 drops the unlabeled images far darker at their bright end, from a folder or
    a datalist file; 0 keeps them; a value out of [0, 1] names the key."""
    import logging

    import numpy as np
    from PIL import Image

    from monai_supmix.data import write_covid_phantoms

    root = write_covid_phantoms(str(tmp_path / "covid"), num_labeled=6, num_unlabeled=4, size=(64, 64))
    unlabeled_dir = Path(root) / "unlabeled" / "images"
    dim = sorted(unlabeled_dir.iterdir())[:3]
    for path in dim:
        Image.fromarray((np.asarray(Image.open(path)) * 0.4).astype(np.uint8)).save(path)
    kept = task_datalists("covid19", root, num_labeled=2, num_val=2)
    assert len(kept["unlabeled"]) == 2 + 4
    with caplog.at_level(logging.INFO):
        split = task_datalists("covid19", root, num_labeled=2, num_val=2, unlabeled_intensity_ratio=0.75)
    assert len(split["unlabeled"]) == 2 + 1 and not {str(p) for p in dim} & {i["image"] for i in split["unlabeled"]}
    assert "3 of 6 unlabeled images" in caplog.text
    as_file = {"labeled": kept["labeled"], "unlabeled": kept["unlabeled"], "validation": kept["validation"]}
    split = task_datalists("covid19", datalist_file=as_file, unlabeled_intensity_ratio=0.75)
    assert len(split["unlabeled"]) == 3
    with pytest.raises(ValueError, match=r"`unlabeled_intensity_ratio`: expected a number in \[0, 1\]"):
        task_datalists("covid19", root, unlabeled_intensity_ratio=1.5)
    with pytest.raises(ValueError, match="unlabeled_intensity_ratio"):
        validate_values(_config(unlabeled_intensity_ratio=-0.1))
