"""Folder inference says what it does with unusual inputs: grayscale into an RGB model, non-images, skipped files."""

from __future__ import annotations

import logging
import os
import stat

import numpy as np
import pytest
import torch
from monai.networks.nets import UNet
from PIL import Image

from monai_supmix.bundle import segment_folder


def _net(in_channels: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return UNet(2, in_channels, 2, channels=(4, 8), strides=(2,), num_res_units=0)


def test_grayscale_image_into_rgb_model_warns(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray((np.random.default_rng(0).random((32, 32)) * 255).astype(np.uint8)).save(folder / "gray.png")
    Image.fromarray((np.random.default_rng(1).random((32, 32, 3)) * 255).astype(np.uint8)).save(folder / "rgb.png")
    with pytest.warns(UserWarning, match=r"gray\.png is a one-channel \(grayscale\) image but the model was trained on 3"):
        written = segment_folder(_net(3), str(folder), str(tmp_path / "out"), "chase", patch_size=(32, 32))
    assert len(written) == 2


def test_rgba_image_warns_that_alpha_is_dropped(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray((np.random.default_rng(0).random((32, 32, 4)) * 255).astype(np.uint8), "RGBA").save(folder / "a.png")
    with pytest.warns(UserWarning, match=r"a\.png has 4 channels \(RGBA\): its alpha channel is dropped"):
        written = segment_folder(_net(3), str(folder), str(tmp_path / "out"), "chase", patch_size=(32, 32))
    assert len(written) == 1


def test_non_images_and_unreadable_files_are_reported_and_counted(tmp_path, caplog, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray((np.random.default_rng(0).random((32, 32)) * 255).astype(np.uint8)).save(folder / "ok.png")
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    old = os.umask(0o022)
    try:
        with caplog.at_level(logging.WARNING):
            written = segment_folder(_net(1), str(folder), str(tmp_path / "out"), "covid19", patch_size=(32, 32),
                                     skip_bad=True)
    finally:
        os.umask(old)
    assert [os.path.basename(p) for p in written] == ["ok_seg.png"]
    assert any("ignored" in r.message and "notes.txt" in r.message for r in caplog.records)
    assert any("broken.png" in r.message for r in caplog.records)
    # outputs get the umask's permissions, like any file the user writes
    assert stat.S_IMODE(os.stat(written[0]).st_mode) == 0o644


def test_summary_counts_skipped_inputs(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.zeros((32, 32), dtype=np.uint8)).save(folder / "ok.png")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    segment_folder(_net(1), str(folder), str(tmp_path / "out"), "covid19", patch_size=(32, 32), skip_bad=True)
    out = capsys.readouterr().out
    assert "1 label map(s) written" in out and "1 input(s) skipped" in out


@pytest.mark.parametrize("task", ["chase", "covid19"])
def test_inference_and_evaluation_share_one_preprocessing(task, tmp_path):
    """The same file through inference's chain and the training/evaluation chain gives the same tensor."""
    from monai_supmix.bundle.inference import inference_preprocessing
    from monai_supmix.data import chase_transforms, covid_transforms

    rng = np.random.default_rng(0)
    shape = (70, 90, 3) if task == "chase" else (70, 90)
    Image.fromarray((rng.random(shape) * 255).astype(np.uint8)).save(tmp_path / "img.png")
    Image.fromarray(np.zeros((70, 90), np.uint8)).save(tmp_path / "lab.png")
    if task == "chase":
        evaluation = chase_transforms("eval", scale=0.5)
        inference = inference_preprocessing("chase", "image2d", scale=0.5)
    else:
        evaluation = covid_transforms("eval", spatial_size=(48, 48))
        inference = inference_preprocessing("covid19", "image2d", spatial_size=(48, 48))
    a = evaluation({"image": str(tmp_path / "img.png"), "label": str(tmp_path / "lab.png")})["image"]
    b = inference({"image": str(tmp_path / "img.png")})["image"]
    assert a.shape == b.shape
    torch.testing.assert_close(torch.as_tensor(a), torch.as_tensor(b))
