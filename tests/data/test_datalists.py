"""Datalists of the CHASE_DB1 and COVID-19 layouts and labeled/unlabeled/validation splits."""

from __future__ import annotations

import os
import shutil

import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from monai_supmix.data import (
    chase_datalist,
    covid_datalist,
    slice_nifti_volumes,
    split_datalist,
    write_chase_phantoms,
    write_covid_phantoms,
)


@pytest.fixture(scope="module")
def chase_root(tmp_path_factory):
    return write_chase_phantoms(str(tmp_path_factory.mktemp("dl") / "chase"), num_images=4, size=(48, 48))


def test_chase_datalist_subfolders(chase_root):
    items = chase_datalist(chase_root)
    assert [i["id"] for i in items] == ["Image_01L", "Image_01R", "Image_02L", "Image_02R"]
    first = items[0]
    assert first["image"].endswith(os.path.join("images", "Image_01L.jpg"))
    assert first["label"].endswith(os.path.join("labels", "Image_01L_1stHO.png"))
    assert first["fov"].endswith(os.path.join("fov", "Image_01L.png"))
    assert "label_2nd" not in first


def test_chase_datalist_flat_folder_and_unlabeled(chase_root, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for sub in ("images", "labels"):
        for name in os.listdir(os.path.join(chase_root, sub)):
            shutil.copy(os.path.join(chase_root, sub, name), flat / name)
    shutil.copy(flat / "Image_01L_1stHO.png", flat / "Image_01L_2ndHO.png")
    os.remove(flat / "Image_02R_1stHO.png")
    with pytest.raises(FileNotFoundError, match="Image_02R"):
        chase_datalist(str(flat))
    items = chase_datalist(str(flat), require_labels=False)
    assert len(items) == 4 and "label" not in items[-1] and "fov" not in items[0]
    assert items[0]["label_2nd"].endswith("Image_01L_2ndHO.png")


def test_chase_datalist_empty(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Image_NNX\.jpg"):
        chase_datalist(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        chase_datalist(str(tmp_path / "missing"))


def test_covid_datalist_slices_numeric_order(tmp_path):
    root = write_covid_phantoms(str(tmp_path / "c"), num_labeled=12, num_unlabeled=3, size=(32, 32))
    out = covid_datalist(root)
    assert [i["id"] for i in out["labeled"]] == [str(i) for i in range(12)]  # 2 before 10
    assert all(set(i) == {"image", "label", "id"} for i in out["labeled"])
    assert len(out["unlabeled"]) == 3 and all("label" not in i for i in out["unlabeled"])


def test_covid_datalist_images_labels_under_root(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for n in (10, 2):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "images" / f"{n}.jpg")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "labels" / f"{n}.png")
    out = covid_datalist(str(tmp_path))
    assert [i["id"] for i in out["labeled"]] == ["2", "10"] and out["unlabeled"] == []


def test_covid_datalist_nifti(tmp_path):
    root = write_covid_phantoms(str(tmp_path / "m"), num_labeled=5, num_unlabeled=2, size=(40, 40), layout="nifti")
    out = covid_datalist(root, cache_dir=str(tmp_path / "cache"))
    assert len(out["labeled"]) == 5 and len(out["unlabeled"]) == 2
    mask = np.asarray(nib.load(os.path.join(root, "tr_mask.nii.gz")).dataobj)
    assert (mask == 3).any()
    for k, item in enumerate(out["labeled"]):
        label = np.asarray(Image.open(item["label"]))
        expected = mask[..., k].copy()
        expected[expected == 3] = 0  # pleural effusion merged into background
        np.testing.assert_array_equal(label, expected)
    # lung window: -1000 HU -> 0, 400 HU -> 255
    hu = np.asarray(nib.load(os.path.join(root, "tr_im.nii.gz")).dataobj)[..., 0].astype(float)
    image = np.asarray(Image.open(out["labeled"][0]["image"])).astype(float)
    np.testing.assert_allclose(image, np.round(np.clip((hu + 1000) / 1400, 0, 1) * 255), atol=1)
    again = covid_datalist(root, cache_dir=str(tmp_path / "cache"))  # cached slices reused
    assert again == out
    kept = covid_datalist(root, cache_dir=str(tmp_path / "cache2"), merge_classes={})
    assert 3 in np.unique(np.asarray(Image.open(kept["labeled"][4]["label"])))


def test_covid_datalist_nifti_read_only_root(tmp_path, monkeypatch):
    root = write_covid_phantoms(str(tmp_path / "ro"), num_labeled=2, num_unlabeled=0, size=(32, 32), layout="nifti")
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)  # as if root were read-only (tests run as root)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    os.makedirs(tmp_path / "tmp")
    out = covid_datalist(root)
    assert out["labeled"][0]["image"].startswith(str(tmp_path / "tmp"))
    assert not os.path.exists(os.path.join(root, ".supmix_slices"))


def test_covid_datalist_default_cache_in_root(tmp_path):
    root = write_covid_phantoms(str(tmp_path / "w"), num_labeled=2, num_unlabeled=0, size=(32, 32), layout="nifti")
    out = covid_datalist(root)
    assert out["labeled"][0]["image"].startswith(os.path.join(root, ".supmix_slices"))


def test_covid_datalist_unlabeled_only_and_pairs(tmp_path):
    (tmp_path / "unlabeled").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "unlabeled" / "a.png")
    out = covid_datalist(str(tmp_path))
    assert out["labeled"] == [] and [i["id"] for i in out["unlabeled"]] == ["a"]
    pair = tmp_path / "pair"
    pair.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 2), np.int16), np.eye(4)), pair / "case_image.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((8, 8, 2), np.uint8), np.eye(4)), pair / "case_mask.nii.gz")
    out = covid_datalist(str(pair), cache_dir=str(tmp_path / "cache"))
    assert len(out["labeled"]) == 2 and out["unlabeled"] == []


def test_covid_datalist_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="tr_im.nii.gz"):
        covid_datalist(str(tmp_path))  # empty folder: the message lists the layouts
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 2), np.int16), np.eye(4)), tmp_path / "tr_im.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((8, 6, 2), np.uint8), np.eye(4)), tmp_path / "tr_mask.nii.gz")
    with pytest.raises(ValueError, match="tr_mask.nii.gz.*shape"):
        covid_datalist(str(tmp_path), cache_dir=str(tmp_path / "cache"))
    data = (tmp_path / "tr_im.nii.gz").read_bytes()
    (tmp_path / "tr_im.nii.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="tr_im.nii.gz"):
        covid_datalist(str(tmp_path), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match="missing.nii.gz"):
        slice_nifti_volumes(str(tmp_path / "missing.nii.gz"), None, str(tmp_path / "x"))


ITEMS = [{"image": f"/d/{i}.png", "label": f"/d/{i}_l.png", "label_2nd": "x", "id": str(i)} for i in range(20)]


def _ids(items):
    return [i["id"] for i in items]


def test_split_counts_reproducible_disjoint():
    a = split_datalist(ITEMS, num_labeled=4, num_val=5, seed=3)
    b = split_datalist(ITEMS, num_labeled=4, num_val=5, seed=3)
    assert a == b
    assert (len(a["labeled"]), len(a["unlabeled"]), len(a["validation"])) == (4, 11, 5)
    parts = [set(_ids(a[k])) for k in ("labeled", "unlabeled", "validation")]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set().union(*parts) == set(_ids(ITEMS))
    assert all("label" not in i and "label_2nd" not in i for i in a["unlabeled"])
    assert all("label" in i for i in a["labeled"] + a["validation"])
    assert "label" in ITEMS[0]  # input untouched
    assert split_datalist(ITEMS, num_labeled=4, num_val=5, seed=4) != a


def test_split_fractions_ids_and_order():
    f = split_datalist(ITEMS, labeled_fraction=0.25, val_fraction=0.1)
    assert (len(f["labeled"]), len(f["validation"])) == (5, 2)
    e = split_datalist(ITEMS, labeled_ids=["0", "1.png"], val_ids=["/d/19.png"], shuffle=False)
    assert _ids(e["labeled"]) == ["0", "1"] and _ids(e["validation"]) == ["19"]
    o = split_datalist(ITEMS, num_labeled=2, num_val=3, shuffle=False)
    assert _ids(o["labeled"]) == ["0", "1"] and _ids(o["validation"]) == ["17", "18", "19"]


def test_split_errors():
    with pytest.raises(ValueError, match=r"num_labeled \(15\) \+ num_val \(6\).*20"):
        split_datalist(ITEMS, num_labeled=15, num_val=6)
    with pytest.raises(ValueError, match="labeled_fraction"):
        split_datalist(ITEMS, labeled_fraction=1.5)
    with pytest.raises(ValueError, match="val_ids"):
        split_datalist(ITEMS, val_ids=["nope"])
    with pytest.raises(ValueError, match="disjoint"):
        split_datalist(ITEMS, labeled_ids=["1"], val_ids=["1"])


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 30), lab=st.integers(0, 30), val=st.integers(0, 30), seed=st.integers(0, 1000))
def test_split_property(n, lab, val, seed):
    items = ITEMS[:0] + [{"image": f"{i}.png", "label": "l", "id": str(i)} for i in range(n)]
    if lab + val > n:
        with pytest.raises(ValueError, match="num_labeled"):
            split_datalist(items, num_labeled=lab, num_val=val, seed=seed)
        return
    out = split_datalist(items, num_labeled=lab, num_val=val, seed=seed)
    ids = _ids(out["labeled"]) + _ids(out["unlabeled"]) + _ids(out["validation"])
    assert sorted(ids) == sorted(_ids(items)) and len(set(ids)) == n
    assert (len(out["labeled"]), len(out["validation"])) == (lab, val)
