"""Inference inputs (2-D images, NIfTI, DICOM series written with pydicom) and label outputs."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from monai_supmix.data import (
    dicom_series_uid,
    list_inference_inputs,
    load_dicom_series,
    load_inference_input,
    save_label,
)

SPACING = (0.7, 0.8)  # PixelSpacing: between rows, between columns
ORIGIN = np.array([-100.0, -50.0, 10.0])
SLICE_STEP = 2.5


def write_dicom_series(folder, volume, series_uid=None, slope=1.0, intercept=-1024.0):
    """Write ``volume`` ``(slices, rows, cols)`` int16 as a minimal CT series, files in reverse order."""
    os.makedirs(folder, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = generate_uid()
    for k, plane in enumerate(volume):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        # file names run against the slice order, so sorting by name would be wrong
        path = os.path.join(folder, f"slice_{len(volume) - k:03d}.dcm")
        ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.Modality = "CT"
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [float(v) for v in ORIGIN + [0, 0, SLICE_STEP * k]]
        ds.PixelSpacing = list(SPACING)
        ds.SliceThickness = SLICE_STEP
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.PixelData = plane.astype(np.int16).tobytes()
        ds.save_as(path, enforce_file_format=True)
    return folder


@pytest.fixture
def dicom_volume():
    rng = np.random.default_rng(0)
    return rng.integers(0, 1500, size=(4, 12, 10)).astype(np.int16)


def test_load_dicom_series_order_rescale_affine(tmp_path, dicom_volume):
    folder = write_dicom_series(str(tmp_path / "ct"), dicom_volume, slope=2.0, intercept=-1024.0)
    volume, affine = load_dicom_series(folder)
    assert volume.shape == (12, 10, 4)
    np.testing.assert_allclose(volume, np.moveaxis(dicom_volume, 0, -1) * 2.0 - 1024.0)
    lps = np.array(
        [[0, SPACING[1], 0, ORIGIN[0]], [SPACING[0], 0, 0, ORIGIN[1]], [0, 0, SLICE_STEP, ORIGIN[2]], [0, 0, 0, 1]]
    )
    np.testing.assert_allclose(affine, np.diag([-1, -1, 1, 1]) @ lps)
    _, affine_lps = load_dicom_series(folder, affine_lps_to_ras=False)
    np.testing.assert_allclose(affine_lps, lps)


def test_dicom_round_trip_through_save_label(tmp_path, dicom_volume):
    write_dicom_series(str(tmp_path / "in" / "series1"), dicom_volume)
    (item,) = list_inference_inputs(str(tmp_path / "in"))
    assert item["kind"] == "dicom" and item["id"] == "series1"
    volume, affine = load_inference_input(item)
    path = save_label((volume > 0).astype(np.uint8), item, str(tmp_path / "out"))
    assert os.path.basename(path) == "series1_seg.nii.gz"
    out = nib.load(path)
    np.testing.assert_allclose(out.affine, affine)
    assert out.shape == volume.shape and out.get_data_dtype() == np.uint8


def test_dicom_mixed_series(tmp_path, dicom_volume):
    folder = str(tmp_path / "in" / "mixed")
    write_dicom_series(folder, dicom_volume[:2], series_uid="1.2.3.4")
    write_dicom_series(str(tmp_path / "other"), dicom_volume[2:], series_uid="1.2.3.5")
    for name in os.listdir(tmp_path / "other"):
        os.replace(tmp_path / "other" / name, os.path.join(folder, "b_" + name))
    with pytest.raises(ValueError, match=r"mixed.*mixes 2 series.*1\.2\.3\.4.*1\.2\.3\.5"):
        list_inference_inputs(str(tmp_path / "in"))
    with pytest.raises(ValueError, match="mixes 2 series"):
        load_dicom_series(folder)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "in" / "ok.png")
    items, bad = list_inference_inputs(str(tmp_path / "in"), skip_bad=True)
    assert [i["id"] for i in items] == ["ok"]
    assert bad[0]["path"] == folder and "mixes 2 series" in bad[0]["reason"]
    with pytest.raises(FileNotFoundError, match="no .dcm"):
        dicom_series_uid(str(tmp_path))


def test_broken_dicom_file(tmp_path, dicom_volume):
    folder = write_dicom_series(str(tmp_path / "s"), dicom_volume[:2])
    (tmp_path / "s" / "zz_broken.dcm").write_bytes(b"garbage" * 10)
    with pytest.raises(ValueError, match="zz_broken.dcm"):
        load_dicom_series(folder)


def test_nifti_round_trip_keeps_affine(tmp_path):
    affine = np.array([[0, -0.9, 0, 120.0], [0.8, 0, 0, -30.0], [0, 0, 3.0, 15.0], [0, 0, 0, 1]])
    volume = np.arange(6 * 5 * 3, dtype=np.int16).reshape(6, 5, 3) - 1000
    nib.save(nib.Nifti1Image(volume, affine), tmp_path / "case7.nii.gz")
    nib.save(nib.Nifti1Image(volume[..., 0], affine), tmp_path / "flat.nii")
    items = list_inference_inputs(str(tmp_path))
    assert [(i["id"], i["kind"]) for i in items] == [("case7", "nifti"), ("flat", "nifti")]
    array, read_affine = load_inference_input(items[0])
    np.testing.assert_array_equal(array, volume)
    for out_affine in (read_affine, None):  # given, or read back from the input
        path = save_label(np.ones(volume.shape, np.uint8), items[0], str(tmp_path / "out"), affine=out_affine)
        assert path.endswith("case7_seg.nii.gz")
        np.testing.assert_allclose(nib.load(path).affine, affine)
    path = save_label(np.zeros((6, 5, 1), np.uint8), items[1], str(tmp_path / "out"))  # 2-D NIfTI
    assert nib.load(path).shape == (6, 5)
    with pytest.raises(ValueError, match="does not match input .*case7.nii.gz"):
        save_label(np.ones((6, 5, 2), np.uint8), items[0], str(tmp_path / "out"))


def test_png_round_trip_keeps_size(tmp_path):
    Image.fromarray(np.zeros((30, 41, 3), np.uint8)).save(tmp_path / "fundus.jpg")
    Image.fromarray(np.zeros((25, 19), np.uint8)).save(tmp_path / "slice.png")
    items = list_inference_inputs(str(tmp_path))
    assert [(i["id"], i["kind"]) for i in items] == [("fundus", "image2d"), ("slice", "image2d")]
    array, affine = load_inference_input(items[0])
    assert array.shape == (3, 30, 41) and affine is None
    label = np.random.default_rng(0).integers(0, 3, size=(30, 41)).astype(np.uint8)
    path = save_label(label[None], items[0], str(tmp_path / "out"))
    assert os.path.basename(path) == "fundus_seg.png"
    with Image.open(path) as im:
        assert im.size == (41, 30)
        np.testing.assert_array_equal(np.asarray(im), label)
    assert not [n for n in os.listdir(tmp_path / "out") if n.startswith(".tmp_")]
    with pytest.raises(ValueError, match="does not match input .*fundus.jpg"):
        save_label(np.zeros((41, 30), np.uint8), items[0], str(tmp_path / "out"))
    with pytest.raises(ValueError, match="0..255"):
        save_label(np.full((30, 41), 300), items[0], str(tmp_path / "out"))


def test_unreadable_inputs_and_skip_bad(tmp_path):
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "good.jpg", quality=95)
    data = (tmp_path / "good.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(ValueError, match="cannot read nifti input .*broken.nii.gz"):
        list_inference_inputs(str(tmp_path))
    os.remove(tmp_path / "broken.nii.gz")
    with pytest.raises(ValueError, match="cannot read image2d input .*truncated.jpg.*pass --skip_bad True"):
        list_inference_inputs(str(tmp_path))
    items, bad = list_inference_inputs(str(tmp_path), skip_bad=True)
    assert [i["id"] for i in items] == ["good"]
    assert [os.path.basename(b["path"]) for b in bad] == ["truncated.jpg"] and "truncated.jpg" in bad[0]["reason"]
    with pytest.raises(ValueError, match="cannot read image2d input .*truncated.jpg"):
        load_inference_input({"image": str(tmp_path / "truncated.jpg"), "id": "t", "kind": "image2d"})


def test_empty_or_missing_input_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing to segment")
    with pytest.raises(FileNotFoundError, match="no inputs in .*expected 2-D images"):
        list_inference_inputs(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_inference_inputs(str(tmp_path / "missing"))
    # images one level down (COVID-SemiSeg's unlabeled/images/): the error names the folder to pass
    (tmp_path / "images").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "images" / "1.png")
    with pytest.raises(FileNotFoundError, match=r"found in .*images'.*pass that folder as --dataset_dir"):
        list_inference_inputs(str(tmp_path))


def test_a_dicom_error_says_what_is_wrong_not_how_to_force_pydicom(tmp_path):
    series = tmp_path / "series"
    series.mkdir()
    (series / "slice1.dcm").write_bytes(b"not a dicom file at all" * 10)
    with pytest.raises(ValueError) as info:
        list_inference_inputs(str(tmp_path))
    message = str(info.value)
    assert "slice1.dcm" in message and "no DICOM header" in message and "--skip_bad True" in message
    assert "force" not in message
