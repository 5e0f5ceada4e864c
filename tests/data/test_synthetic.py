"""Synthetic phantoms: determinism, value ranges, class frequencies and on-disk layouts."""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from monai_supmix.data import (
    make_ct_phantom,
    make_ct_phantom_volume,
    make_retina_phantom,
    write_chase_phantoms,
    write_covid_phantoms,
)


def test_retina_phantom_deterministic_and_ranges():
    a, b = make_retina_phantom(3), make_retina_phantom(3)
    for key in ("image", "label", "fov"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["label"], make_retina_phantom(4)["label"])
    assert a["image"].shape == (3, 256, 256) and a["image"].dtype == np.float32
    assert a["image"].min() >= 0 and a["image"].max() <= 1
    assert a["label"].shape == a["fov"].shape == (1, 256, 256)
    assert a["label"].dtype == a["fov"].dtype == np.uint8
    assert set(np.unique(a["label"])) <= {0, 1} and set(np.unique(a["fov"])) == {0, 1}
    assert not (a["label"] & (1 - a["fov"])).any(), "vessels outside the FOV"


@pytest.mark.parametrize("seed", [0, 1, 2, 5])
def test_retina_vessel_fraction(seed):
    frac = make_retina_phantom(seed)["label"].mean()
    assert 0.05 <= frac <= 0.12, frac


def test_retina_not_separable_by_threshold():
    ph = make_retina_phantom(1)
    fov, label = ph["fov"][0] > 0, ph["label"][0] > 0
    green, truth = ph["image"][1][fov], label[fov]
    best = 0.0
    for th in np.quantile(green, np.linspace(0.01, 0.4, 30)):
        pred = green < th
        best = max(best, 2 * (pred & truth).sum() / (pred.sum() + truth.sum()))
    assert best < 0.6, f"a global threshold already reaches Dice {best:.2f}"


def test_ct_phantom_classes():
    fractions = []
    for seed in range(6):
        ph = make_ct_phantom(seed, size=(128, 128))
        assert ph["image"].shape == ph["label"].shape == (1, 128, 128)
        assert ph["image"].dtype == np.float32 and ph["label"].dtype == np.uint8
        assert 0 <= ph["image"].min() and ph["image"].max() <= 1
        assert set(np.unique(ph["label"])) <= {0, 1, 2}
        fractions.append([(ph["label"] == k).mean() for k in (1, 2)])
    fractions = np.array(fractions)
    assert 0.003 < fractions[:, 0].mean() < 0.1  # ground-glass: a few %
    assert fractions[:, 1].mean() < fractions[:, 0].mean()  # consolidation rarer
    assert fractions[:, 0].std() > 0  # varies between seeds
    np.testing.assert_array_equal(make_ct_phantom(2, (64, 64))["image"], make_ct_phantom(2, (64, 64))["image"])


def test_ct_phantom_volume():
    vol = make_ct_phantom_volume(1, size=(4, 64, 48))
    assert vol["image"].shape == vol["label"].shape == (4, 64, 48)
    assert vol["image"].dtype == np.int16 and vol["image"].min() >= -1000 and vol["image"].max() <= 400


def test_bad_sizes():
    with pytest.raises(ValueError, match="size"):
        make_retina_phantom(0, size=(8, 8))
    with pytest.raises(ValueError, match="size"):
        make_ct_phantom_volume(0, size=(64, 64))


def test_write_chase_phantoms_layout_and_idempotence(tmp_path):
    root = write_chase_phantoms(str(tmp_path / "chase"), num_images=3, size=(64, 64), seed=1)
    assert sorted(os.listdir(os.path.join(root, "images"))) == ["Image_01L.jpg", "Image_01R.jpg", "Image_02L.jpg"]
    with Image.open(os.path.join(root, "images", "Image_01L.jpg")) as im:
        assert im.mode == "RGB" and im.size == (64, 64)
    with Image.open(os.path.join(root, "labels", "Image_01L_1stHO.png")) as im:
        assert im.mode == "1"  # like the real CHASE_DB1 labels: 1-bit, read as 0/1
    with Image.open(os.path.join(root, "fov", "Image_01L.png")) as im:
        assert set(np.unique(np.asarray(im))) == {0, 255}
    with open(os.path.join(root, "phantom.json")) as f:
        assert json.load(f)["num_images"] == 3
    stamp = os.stat(os.path.join(root, "images", "Image_01L.jpg")).st_mtime_ns
    assert write_chase_phantoms(root, num_images=3, size=(64, 64), seed=1) == root
    assert os.stat(os.path.join(root, "images", "Image_01L.jpg")).st_mtime_ns == stamp  # skipped
    write_chase_phantoms(root, num_images=2, size=(64, 64), seed=1)  # other parameters: regenerated
    assert len(os.listdir(os.path.join(root, "images"))) == 2
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".phantom_tmp_")]


def test_write_covid_phantoms_slices(tmp_path):
    root = write_covid_phantoms(str(tmp_path / "covid"), num_labeled=3, num_unlabeled=2, size=(48, 64))
    with Image.open(os.path.join(root, "labeled", "labels", "0.png")) as im:
        assert im.mode == "P" and im.size == (64, 48)  # palette PNG of class indices, like the real files
        assert set(np.unique(np.asarray(im))) <= {0, 1, 2}
    with Image.open(os.path.join(root, "labeled", "images", "0.jpg")) as im:
        assert im.mode == "L"
    assert len(os.listdir(os.path.join(root, "unlabeled", "images"))) == 2


def test_write_covid_phantoms_nifti(tmp_path):
    root = write_covid_phantoms(str(tmp_path / "medseg"), num_labeled=4, num_unlabeled=2, size=(48, 48), layout="nifti")
    image, mask = nib.load(os.path.join(root, "tr_im.nii.gz")), nib.load(os.path.join(root, "tr_mask.nii.gz"))
    assert image.shape == mask.shape == (48, 48, 4)
    assert image.get_data_dtype() == np.int16
    assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1, 2, 3}
    with pytest.raises(ValueError, match="layout"):
        write_covid_phantoms(str(tmp_path / "x"), layout="dicom")
