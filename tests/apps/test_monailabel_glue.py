"""The MONAI Label glue that works without MONAI Label: datalists, app folders, CLI, import guard."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import monai_supmix.apps.monailabel as glue
from monai_supmix.apps.monailabel import (
    APP_MAIN,
    create_app,
    datastore_datalist,
    find_bundles,
    is_monailabel_available,
    write_datalist_file,
)
from monai_supmix.apps.monailabel.__main__ import main as cli_main
from monai_supmix.apps.monailabel.compat import allow_missing_keys
from monai_supmix.bundle import task_datalists

REPO = Path(__file__).resolve().parents[2]
CHASE = REPO / "bundles" / "chase"
COVID = REPO / "bundles" / "covid19"


def _pairs(n, root="/data"):
    return [{"image": f"{root}/img{i}.png", "label": f"{root}/labels/final/img{i}.png"} for i in range(n)]


# --- datalists -------------------------------------------------------------------------


def test_datalist_holds_out_validation_from_the_end():
    content = datastore_datalist(_pairs(5), ["/data/u0.png", {"image": "/data/u1.png"}], val_split=0.2)
    assert [p["image"] for p in content["labeled"]] == [f"/data/img{i}.png" for i in range(4)]
    assert [p["image"] for p in content["validation"]] == ["/data/img4.png"]
    assert content["unlabeled"] == [{"image": "/data/u0.png"}, {"image": "/data/u1.png"}]


@pytest.mark.parametrize("n, val_split, n_train, n_val", [(2, 0.2, 1, 1), (3, 0.9, 1, 2), (10, 0.25, 8, 2)])
def test_datalist_split_keeps_one_for_training_and_one_for_validation(n, val_split, n_train, n_val):
    content = datastore_datalist(_pairs(n), [], val_split=val_split)
    assert (len(content["labeled"]), len(content["validation"])) == (n_train, n_val)


def test_datalist_single_label_and_zero_split_validate_on_training_labels():
    one = datastore_datalist(_pairs(1), ["/data/u.png"], val_split=0.2)
    assert one["labeled"] == one["validation"] == _pairs(1)
    zero = datastore_datalist(_pairs(3), [], val_split=0)
    assert zero["labeled"] == zero["validation"] == _pairs(3)


def test_datalist_without_split_leaves_validation_to_the_bundle():
    for val_split in (None, -1):
        assert "validation" not in datastore_datalist(_pairs(3), [], val_split=val_split)
    explicit = datastore_datalist(_pairs(3), [], validation=_pairs(1, "/val"), val_split=0.5)
    assert explicit["labeled"] == _pairs(3) and explicit["validation"] == _pairs(1, "/val")


def test_datalist_drops_labeled_images_from_the_unlabeled_set():
    content = datastore_datalist(_pairs(2), ["/data/img1.png", "/data/u.png"])
    assert content["unlabeled"] == [{"image": "/data/u.png"}]


def test_datalist_errors_name_the_problem():
    with pytest.raises(ValueError, match="no labeled image"):
        datastore_datalist([], ["/data/u.png"])
    with pytest.raises(ValueError, match="labeled item 1"):
        datastore_datalist([_pairs(1)[0], {"image": "/x.png"}], [])
    with pytest.raises(ValueError, match="unlabeled item 0"):
        datastore_datalist(_pairs(1), [{"label": "/x.png"}])


def test_written_datalist_is_what_the_bundle_reads(tmp_path):
    content = datastore_datalist(_pairs(4), ["/data/u0.png", "/data/u1.png"], val_split=0.25)
    path = write_datalist_file(content, str(tmp_path / "sub" / "datalist.json"))
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    assert json.loads(Path(path).read_text()) == content
    for task in ("chase", "covid19"):
        lists = task_datalists(task, datalist_file=path)
        assert [p["image"] for p in lists["labeled"]] == [p["image"] for p in content["labeled"]]
        assert lists["unlabeled"] == content["unlabeled"]
        assert [p["image"] for p in lists["validation"]] == ["/data/img3.png"]


# --- app folders -----------------------------------------------------------------------


def test_create_app_copies_bundles_without_outputs(tmp_path):
    app = Path(create_app(str(tmp_path / "app"), [str(CHASE), str(COVID)], copy_weights=False))
    assert (app / "main.py").read_text() == APP_MAIN
    for name in ("chase", "covid19"):
        bundle = app / "model" / name
        assert (bundle / "configs" / "train.json").is_file() and not (bundle / "models").exists()
    assert find_bundles(str(app / "model")) == {
        "chase": str(app / "model" / "chase"),
        "covid19": str(app / "model" / "covid19"),
    }
    assert list(find_bundles(str(app / "model"), "covid19")) == ["covid19"]
    with pytest.raises(FileNotFoundError, match="'spleen' not found"):
        find_bundles(str(app / "model"), "chase, spleen")


def test_create_app_copies_weights_links_and_keeps_existing(tmp_path):
    source = tmp_path / "chase"
    import shutil

    shutil.copytree(CHASE, source, ignore=shutil.ignore_patterns("models", "eval", "runs"))
    (source / "models").mkdir()
    (source / "models" / "model.pt").write_bytes(b"weights")
    (source / "models" / "checkpoint_epoch=3.pt").write_bytes(b"full state")
    app = tmp_path / "app"
    create_app(str(app), [str(source)])
    assert (app / "model" / "chase" / "models" / "model.pt").read_bytes() == b"weights"
    assert not (app / "model" / "chase" / "models" / "checkpoint_epoch=3.pt").exists()
    (app / "model" / "chase" / "models" / "model.pt").write_bytes(b"trained in the app")
    create_app(str(app), [str(source)])  # existing bundle left as it is
    assert (app / "model" / "chase" / "models" / "model.pt").read_bytes() == b"trained in the app"
    create_app(str(app), [str(source)], link=True, overwrite=True)
    assert os.path.islink(app / "model" / "chase")
    assert os.path.realpath(app / "model" / "chase") == os.path.realpath(source)


def test_create_app_rejects_what_is_not_a_bundle(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a monai_supmix bundle"):
        create_app(str(tmp_path / "app"), [str(tmp_path / "empty")])
    with pytest.raises(ValueError, match="at least one bundle"):
        create_app(str(tmp_path / "app"), [])
    with pytest.raises(FileNotFoundError, match="no bundle in"):
        find_bundles(str(tmp_path / "nowhere"))


def test_cli_create_app(tmp_path, capsys):
    assert cli_main(["create-app", str(tmp_path / "app"), "--bundle", str(CHASE), "--no-weights"]) == 0
    out = capsys.readouterr().out
    assert "monailabel start_server --app" in out and "--conf models chase" in out
    assert (tmp_path / "app" / "model" / "chase" / "configs" / "inference.json").is_file()
    assert cli_main(["create-app", str(tmp_path / "app2"), "--bundle", str(tmp_path)]) == 2
    assert "not a monai_supmix bundle" in capsys.readouterr().err


# --- import guard and data adapters ----------------------------------------------------


@pytest.mark.skipif(is_monailabel_available(), reason="MONAI Label is installed in this environment")
def test_monailabel_classes_say_how_to_get_monailabel():
    for name in ("SupMixApp", "SupMixInferTask", "SupMixTrainTask"):
        with pytest.raises(ImportError, match="monailabel_env.sh"):
            getattr(glue, name)
    with pytest.raises(AttributeError):
        glue.NoSuchThing  # noqa: B018


def test_labeled_chain_accepts_datastore_items_without_fov(tmp_path):
    from monai_supmix.data import chase_transforms

    image = (np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)
    label = np.zeros((40, 48), dtype=np.uint8)
    label[10:14] = 1
    Image.fromarray(image).save(tmp_path / "img.jpg")
    Image.fromarray(label).save(tmp_path / "img.png")
    chain = allow_missing_keys(chase_transforms("train", patch_size=(32, 32)))
    out = chain({"image": str(tmp_path / "img.jpg"), "label": str(tmp_path / "img.png")})
    assert tuple(out["image"].shape) == (3, 32, 32) and tuple(out["label"].shape) == (1, 32, 32)
    assert bool((out["fov"] == 1).all())  # no FOV mask in the datastore: the whole image
