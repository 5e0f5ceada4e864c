"""Evaluation and inference refuse a preprocessing other than the training run's, and the phantom fallback."""

from __future__ import annotations

import pytest
import torch

from monai_supmix.bundle import TrainingSettings, check_training_settings, read_training_settings


def _model(tmp_path, **settings):
    path = tmp_path / "model.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "settings": TrainingSettings(**settings).state_dict()}, path)
    return str(path)


def test_settings_round_trip_and_match(tmp_path):
    path = _model(tmp_path, task="chase", scale=0.5, patch_size=(96, 96), num_classes=2, dataset_dir="/data/chase")
    assert read_training_settings(path)["patch_size"] == [96, 96]
    saved = check_training_settings(path, "inference", task="chase", scale=0.5, patch_size=[96, 96], num_classes=2)
    assert saved["dataset_dir"] == "/data/chase"


def test_other_preprocessing_is_refused_naming_the_training_values(tmp_path):
    path = _model(tmp_path, task="covid19", spatial_size=[192, 192], num_classes=3)
    with pytest.raises(ValueError, match=r"trained with --spatial_size \[192, 192\] --num_classes 3 .* pass"):
        check_training_settings(path, "inference", task="covid19", spatial_size=[256, 256], num_classes=4)


def test_evaluating_a_real_data_model_on_phantoms_is_refused(tmp_path):
    path = _model(tmp_path, task="chase", scale=1.0, dataset_dir="/data/chase", datalist_file=None)
    with pytest.raises(ValueError, match=r"trained on /data/chase .* pass --dataset_dir /data/chase"):
        check_training_settings(path, "evaluation", task="chase", scale=1.0, dataset_dir=None, datalist_file=None)
    # another folder (e.g. a held-out test set) is the user's choice
    check_training_settings(path, "evaluation", task="chase", scale=1.0, dataset_dir="/data/test", datalist_file=None)


def test_checkpoint_without_settings_warns(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"w": torch.zeros(1)}, path)
    with pytest.warns(UserWarning, match="records no training settings"):
        assert check_training_settings(str(path), "inference", task="chase") == {}
