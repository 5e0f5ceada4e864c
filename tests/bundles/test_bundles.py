"""Run the real bundle configs through monai.bundle with tiny overrides."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import REPO, TINY, config, run_bundle
from PIL import Image

from monai_supmix.data import make_ct_phantom_volume

pytestmark = pytest.mark.slow


def _write_dicom_series(folder, volume, spacing=(0.7, 0.7), thickness=2.5):
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    os.makedirs(folder, exist_ok=True)
    series = generate_uid()
    for k in range(volume.shape[-1]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = os.path.join(folder, f"slice_{k:03d}.dcm")
        ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.SeriesInstanceUID = series
        ds.StudyInstanceUID = generate_uid()
        ds.Modality = "CT"
        ds.InstanceNumber = k + 1
        ds.Rows, ds.Columns = volume.shape[:2]
        ds.PixelSpacing = list(spacing)
        ds.SliceThickness = thickness
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0, 0, k * thickness]
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = (volume[..., k].astype(np.int32) + 1024).clip(0, 4095).astype(np.uint16).tobytes()
        ds.save_as(path, enforce_file_format=True)


@pytest.mark.parametrize("bundle", ["chase", "covid19"])
def test_train_evaluate_infer(bundle, phantom_cache, tmp_path):
    out = str(tmp_path / "out")
    run_bundle(bundle, ("train",), run_id="training", output_dir=out, **TINY)
    model = os.path.join(out, "models", "model.pt")
    assert os.path.isfile(model)
    assert any(f.startswith("checkpoint") for f in os.listdir(os.path.join(out, "models")))
    state = torch.load(model, map_location="cpu", weights_only=True)
    assert any(k.startswith("model.0.") for k in state["model"])  # the UNet's state dict under "model"
    assert state["settings"]["task"] == bundle and state["settings"]["num_classes"] == len(
        json.load(open(config(bundle, "train")[0]))["class_names"]
    )

    run_bundle(bundle, ("train", "evaluate"), output_dir=out, **TINY)
    with open(os.path.join(out, "eval", "metrics.json")) as f:
        metrics = json.load(f)
    names = json.load(open(config(bundle, "train")[0]))["class_names"]
    assert list(metrics["iou"]) == names and list(metrics["dice"]) == names
    assert list(metrics["pooled_iou"]) == names and len(metrics["per_image"]) == metrics["num_images"]
    assert 0.0 <= metrics["miou"] <= 1.0 and 0.0 <= metrics["pooled_miou"] <= 1.0
    assert metrics["training_settings"]["task"] == bundle  # the training run's data settings are recorded

    # inference on 2-D images of the phantom set, at their original size
    phantoms = [d for d in os.listdir(os.path.join(phantom_cache, "phantoms")) if d.startswith(bundle)][0]
    root = os.path.join(phantom_cache, "phantoms", phantoms)
    images = os.path.join(root, "images") if bundle == "chase" else os.path.join(root, "labeled", "images")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name in sorted(os.listdir(images))[:2]:
        Image.open(os.path.join(images, name)).resize((150, 130)).save(inputs / name)
    preds = tmp_path / "preds"
    run_bundle(bundle, ("inference",), dataset_dir=str(inputs), output_dir=str(preds), ckpt_path=model)
    for name in sorted(os.listdir(inputs)):
        stem = os.path.splitext(name)[0]
        seg = np.asarray(Image.open(preds / f"{stem}_seg.png"))
        assert seg.shape == (130, 150) and seg.dtype == np.uint8
        assert seg.max() < len(names)


def test_covid_inference_on_nifti_and_dicom(phantom_cache, tmp_path):
    out = str(tmp_path / "out")
    run_bundle("covid19", ("train",), run_id="run", output_dir=out, **TINY)  # `run` is the alias of `training`
    model = os.path.join(out, "models", "model.pt")
    vol = make_ct_phantom_volume(3, size=(3, 64, 48))
    hu = np.moveaxis(vol["image"], 0, -1)  # (H, W, slices) as in the MedSeg release
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    affine = np.array([[0.8, 0, 0, -10], [0, 0.8, 0, 5], [0, 0, 5.0, 30], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(hu, affine), str(inputs / "ct.nii.gz"))
    _write_dicom_series(str(inputs / "series1"), hu)
    preds = tmp_path / "preds"
    run_bundle("covid19", ("inference",), dataset_dir=str(inputs), output_dir=str(preds), ckpt_path=model)
    seg = nib.load(str(preds / "ct_seg.nii.gz"))
    assert seg.shape == hu.shape
    np.testing.assert_allclose(seg.affine, affine)
    assert np.asarray(seg.dataobj).max() <= 2
    dicom_seg = nib.load(str(preds / "series1_seg.nii.gz"))
    assert dicom_seg.shape == hu.shape
    np.testing.assert_allclose(dicom_seg.affine[:3, 2], [0, 0, 2.5])


def test_wrong_key_fails_naming_it(phantom_cache, tmp_path):
    with pytest.raises(Exception) as info:
        run_bundle("chase", ("train",), run_id="training", output_dir=str(tmp_path), num_labled=2, **TINY)
    assert "num_labled" in repr(info.value) + str(info.value.__cause__) + str(info.getrepr())
    assert "did you mean `num_labeled`" in str(info.getrepr())


def test_missing_dataset_dir_fails_clearly(phantom_cache, tmp_path):
    with pytest.raises(Exception) as info:
        run_bundle("chase", ("train",), run_id="training", output_dir=str(tmp_path), dataset_dir="/no/such/folder", **TINY)
    assert "/no/such/folder" in str(info.getrepr()) and "does not exist" in str(info.getrepr())


def test_wrong_value_type_fails(phantom_cache, tmp_path):
    with pytest.raises(Exception) as info:
        run_bundle("chase", ("train",), run_id="training", output_dir=str(tmp_path), mix="cutmix", **TINY)
    assert "config key `mix`" in str(info.getrepr())


def test_python_m_monai_bundle_command(phantom_cache, tmp_path):
    """The README's main command, as a subprocess, from another working directory."""
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "training",
        "--config_file",
        str(REPO / "bundles" / "chase" / "configs" / "train.json"),
        "--output_dir",
        str(tmp_path / "out"),
    ]
    for key, value in TINY.items():
        cmd += [f"--{key}", str(value)]
    env = dict(os.environ, MONAI_SUPMIX_CACHE=phantom_cache)
    proc = subprocess.run(cmd, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "best validation mIoU" in proc.stdout
    assert os.path.isfile(tmp_path / "out" / "models" / "model.pt")


@pytest.mark.parametrize("bundle", ["chase", "covid19"])
def test_ckpt_export_and_verify_net_in_out(bundle, tmp_path):
    from monai.bundle import ConfigParser, ckpt_export, verify_net_in_out

    meta, infer = str(REPO / "bundles" / bundle / "configs" / "metadata.json"), config(bundle, "inference")[0]
    verify_net_in_out(net_id="network_def", meta_file=meta, config_file=infer)
    parser = ConfigParser()
    parser.read_config(infer)
    parser["bundle_root"] = str(tmp_path)
    ckpt = tmp_path / "model.pt"
    torch.save(parser.get_parsed_content("network_def").state_dict(), ckpt)
    ckpt_export(net_id="network_def", filepath=str(tmp_path / "model.ts"), ckpt_file=str(ckpt), meta_file=meta, config_file=infer)
    scripted = torch.jit.load(str(tmp_path / "model.ts"))
    channels = json.load(open(meta))["network_data_format"]["inputs"]["image"]["num_channels"]
    assert scripted(torch.zeros(1, channels, 96, 96)).shape[1] == len(json.load(open(config(bundle, "train")[0]))["class_names"])


def test_covid_bundle_with_four_classes_on_a_medseg_nifti_phantom(phantom_cache, tmp_path):
    """MedSeg's NIfTI layout with pleural effusion (label 3) kept as a fourth class."""
    import nibabel as nib

    from monai_supmix.data import write_covid_phantoms

    data = write_covid_phantoms(str(tmp_path / "medseg"), num_labeled=12, num_unlabeled=4, size=(64, 64), layout="nifti")
    assert 3 in np.unique(np.asarray(nib.load(os.path.join(data, "tr_mask.nii.gz")).dataobj))
    out = str(tmp_path / "out")
    four = {"num_classes": 4, "class_names": ["background", "ggo", "consolidation", "effusion"],
            "spatial_size": [64, 64], "patch_size": [32, 32]}
    common = {**TINY, **four, "dataset_dir": data, "num_labeled": 4, "num_val": 4, "output_dir": out}
    run_bundle("covid19", ("train",), run_id="training", **common)
    run_bundle("covid19", ("train", "evaluate"), **common)
    with open(os.path.join(out, "eval", "metrics.json")) as f:
        metrics = json.load(f)
    assert list(metrics["pooled_iou"]) == four["class_names"]
    labels = sum((np.asarray(i["tp"]) + np.asarray(i["fn"]) for i in metrics["per_image"]), np.zeros(4))
    assert labels[3] > 0, "the validation slices hold effusion pixels: class 3 was kept, not merged"
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    os.symlink(os.path.join(data, "tr_im.nii.gz"), inputs / "tr_im.nii.gz")
    run_bundle("covid19", ("inference",), dataset_dir=str(inputs), output_dir=str(tmp_path / "preds"),
               ckpt_path=os.path.join(out, "models", "model.pt"), **{k: four[k] for k in ("num_classes", "spatial_size", "patch_size")})
    seg = nib.load(str(tmp_path / "preds" / "tr_im_seg.nii.gz"))
    assert seg.shape == (64, 64, 12) and np.asarray(seg.dataobj).max() <= 3
    np.testing.assert_allclose(seg.affine, nib.load(os.path.join(data, "tr_im.nii.gz")).affine)


@pytest.mark.parametrize("mix, sufd, extra", [("none", False, {}), ("classmix", False, {}), ("supmix", True, {}),
                                              ("both", True, {}), ("both", True, {"distribution_alignment": True}),
                                              ("both", True, {"self_training_min_dice": 1.0})])
def test_every_mix_mode_trains_through_the_bundle(mix, sufd, extra, phantom_cache, tmp_path):
    """Each `mix` (and SUFD on/off, distribution alignment, the self-training gate) runs end to end, with the strong view and the anatomy region on."""
    out = str(tmp_path / "out")
    run_bundle("chase", ("train",), run_id="training", output_dir=out, mix=mix, sufd=sufd,
               discriminator_input="unlabeled", supmix_feather_sigma=1.0, supmix_flip_source=True, **extra, **TINY)
    state = torch.load(os.path.join(out, "models", "checkpoint_epoch=1.pt"), map_location="cpu", weights_only=False)
    assert ("discriminator" in state) == sufd
    assert state["trainer"]["iteration"] == TINY["iterations_per_epoch"]
    assert ("teacher_class_mean" in state["trainer"]) == bool(extra.get("distribution_alignment"))
    # a gate the tiny run cannot open (Dice 1.0 on every labeled class): checkpointed, still closed
    assert ("self_training_start" in state["trainer"]) == ("self_training_min_dice" in extra)
    if "self_training_min_dice" in extra:
        assert state["trainer"]["self_training_start"] is None


def test_evaluation_and_inference_take_the_training_settings_from_model_pt(phantom_cache, tmp_path):
    """Trained at 64x64 with 32x32 patches: evaluate and infer without repeating them; another value is refused."""
    out = str(tmp_path / "out")
    settings = {"spatial_size": [64, 64], "patch_size": [32, 32]}
    run_bundle("covid19", ("train",), run_id="training", output_dir=out, **TINY, **settings)
    run_bundle("covid19", ("train", "evaluate"), output_dir=out, **TINY)  # no spatial_size / patch_size given
    with open(os.path.join(out, "eval", "metrics.json")) as f:
        assert json.load(f)["training_settings"]["spatial_size"] == [64, 64]
    with pytest.raises(RuntimeError) as info:  # MONAI wraps the config expression's error
        run_bundle("covid19", ("train", "evaluate"), output_dir=out, **TINY, spatial_size=[96, 96])
    assert "was trained with --spatial_size [64, 64]" in str(info.value.__cause__)
    root = [d for d in os.listdir(os.path.join(phantom_cache, "phantoms")) if d.startswith("covid19")][0]
    images = os.path.join(phantom_cache, "phantoms", root, "labeled", "images")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    name = sorted(os.listdir(images))[0]
    Image.open(os.path.join(images, name)).resize((70, 50)).save(inputs / name)
    preds = tmp_path / "preds"
    run_bundle("covid19", ("inference",), dataset_dir=str(inputs), output_dir=str(preds),
               ckpt_path=os.path.join(out, "models", "model.pt"))
    assert np.asarray(Image.open(preds / f"{os.path.splitext(name)[0]}_seg.png")).shape == (50, 70)


def test_training_without_validation_saves_the_final_model_for_evaluation(phantom_cache, tmp_path):
    """COVID-SemiSeg's setting: every labeled slice trains (num_val 0); model.pt is the final teacher, then scored."""
    out = str(tmp_path / "out")
    run_bundle("covid19", ("train",), run_id="training", output_dir=out, num_val=0, num_labeled=50, **TINY)
    model = os.path.join(out, "models", "model.pt")
    state = torch.load(model, map_location="cpu", weights_only=True)
    assert state["settings"]["num_val"] == 0 and any(k.startswith("model.") for k in state["model"])
    from monai_supmix.bundle import task_items

    root = [d for d in os.listdir(os.path.join(phantom_cache, "phantoms")) if d.startswith("covid19")][0]
    test, _ = task_items("covid19", os.path.join(phantom_cache, "phantoms", root))
    datalist = tmp_path / "test.json"
    datalist.write_text(json.dumps({"labeled": test[:3], "validation": test[:3]}))
    run_bundle("covid19", ("train", "evaluate"), output_dir=out, datalist_file=str(datalist), **TINY)
    with open(os.path.join(out, "eval", "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["num_images"] == 3 and set(metrics["infnet_dice"]) == set(metrics["class_names"])
