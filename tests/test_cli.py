"""Tests of the ``monai-supmix`` command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from monai_supmix.cli import main


def test_phantoms_then_check_data_chase(tmp_path, capsys):
    out = tmp_path / "chase"
    assert main(["phantoms", "chase", str(out), "--num_images", "8", "--size", "64", "64"]) == 0
    assert len(os.listdir(out / "images")) == 8
    assert len(os.listdir(out / "labels")) == 8
    capsys.readouterr()
    assert main(["check-data", "chase", str(out), "--num_labeled", "2", "--num_val", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counts"] == {"labeled": 2, "unlabeled": 4, "validation": 2}
    assert all("label" not in item for item in report["unlabeled"])
    assert [i["id"] for i in report["labeled"]] == ["Image_01L", "Image_01R"]


def test_phantoms_covid_nifti(tmp_path, capsys):
    out = tmp_path / "covid"
    code = main(["phantoms", "covid19", str(out), "--num_images", "3", "--num_unlabeled", "2", "--size", "48", "48", "--layout", "nifti"])
    assert code == 0
    assert any(f.endswith((".nii", ".nii.gz")) for _, _, files in os.walk(out) for f in files)


def test_check_data_errors_name_the_problem(tmp_path, capsys):
    out = tmp_path / "chase"
    main(["phantoms", "chase", str(out), "--num_images", "4", "--size", "48", "48"])
    capsys.readouterr()
    assert main(["check-data", "chase", str(out), "--num_labeled", "4", "--num_val", "2"]) == 2
    err = capsys.readouterr().err
    assert "num_labeled (4) + num_val (2)" in err
    assert main(["check-data", "chase", "--datalist_file", str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["check-data", "chase"])


def test_console_entry_point_module():
    result = subprocess.run([sys.executable, "-m", "monai_supmix.cli", "version"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("monai_supmix ")


def test_check_data_lists_missing_files(tmp_path, capsys):
    root = tmp_path / "chase"
    main(["phantoms", "chase", str(root), "--num_images", "4", "--size", "48", "48"])
    images = sorted((root / "images").iterdir())
    datalist = {
        "labeled": [{"image": str(images[0]), "label": str(root / "labels" / f"{images[0].stem}_1stHO.png")}],
        "unlabeled": [{"image": str(images[1])}, {"image": str(tmp_path / "gone.png")}],
        "validation": [{"image": str(images[2]), "label": str(tmp_path / "no_label.png")}],
    }
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps(datalist))
    capsys.readouterr()
    assert main(["check-data", "chase", "--datalist_file", str(path)]) == 2
    err = capsys.readouterr().err
    assert "unlabeled[1]['image']" in err and "gone.png" in err
    assert "validation[0]['label']" in err and "no_label.png" in err
    assert "2 listed file(s) do not exist" in err


def test_check_data_uses_the_bundle_split_and_opens_every_file(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from monai_supmix.bundle import SPLIT_DEFAULTS

    root = tmp_path / "ct"
    main(["phantoms", "covid19", str(root), "--num_images", "24", "--num_unlabeled", "3", "--size", "48", "48"])
    capsys.readouterr()
    assert main(["check-data", "covid19", str(root), "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)["counts"]
    # the covid19 bundle's own defaults (10 / 10), not the CHASE ones
    assert counts["labeled"] == SPLIT_DEFAULTS["covid19"]["num_labeled"] == 10
    assert counts["validation"] == SPLIT_DEFAULTS["covid19"]["num_val"] == 10
    # a truncated JPEG passes an existence check but not the bundle's reader
    image = root / "unlabeled" / "images" / "1.jpg"
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 3])
    label = root / "labeled" / "labels" / "0.png"
    values = np.array(Image.open(label))
    values[:2, :2] = 9
    Image.fromarray(values).save(label)
    assert main(["check-data", "covid19", str(root)]) == 2
    err = capsys.readouterr().err
    assert "unreadable: 1: " in err and "truncated" in err
    assert "unreadable: 0: " in err and "outside the classes 0..2" in err


def test_split_defaults_match_the_bundles():
    from pathlib import Path

    from monai_supmix.bundle import SPLIT_DEFAULTS

    bundles = Path(__file__).resolve().parents[1] / "bundles"
    for task, defaults in SPLIT_DEFAULTS.items():
        config = json.loads((bundles / task / "configs" / "train.json").read_text())
        assert {k: config[k] for k in defaults} == defaults, task
