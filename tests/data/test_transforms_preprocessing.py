"""Preprocessing chains: shapes, orientation, value ranges, missing keys, inversion and bad labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import Invertd
from PIL import Image

from monai_supmix.data import (
    chase_datalist,
    chase_transforms,
    covid_datalist,
    covid_transforms,
    write_chase_phantoms,
    write_covid_phantoms,
)


def _cause(exc: BaseException) -> BaseException:
    """MONAI's Compose wraps errors in RuntimeError('applying transform ...'): return the original."""
    while exc.__cause__ is not None and isinstance(exc, RuntimeError):
        exc = exc.__cause__
    return exc


@pytest.fixture(scope="module")
def chase_items(tmp_path_factory):
    root = write_chase_phantoms(str(tmp_path_factory.mktemp("tp") / "chase"), num_images=2, size=(64, 80))
    return chase_datalist(root)


@pytest.fixture(scope="module")
def covid_items(tmp_path_factory):
    root = write_covid_phantoms(str(tmp_path_factory.mktemp("tp") / "covid"), 2, 1, size=(48, 72))
    return covid_datalist(root)


def test_chase_eval_orientation_and_values(chase_items):
    item = chase_items[0]
    out = chase_transforms("eval")(item)
    assert out["image"].shape == (3, 64, 80) and out["image"].dtype == torch.float32
    assert out["label"].shape == out["fov"].shape == (1, 64, 80) and out["label"].dtype == torch.int64
    assert 0 <= out["image"].min() and out["image"].max() <= 1
    # same orientation as the files (rows first), for JPEG image and PNG masks alike
    rgb = np.asarray(Image.open(item["image"]))
    np.testing.assert_allclose(out["image"].numpy(), np.moveaxis(rgb, -1, 0) / 255.0, atol=1e-6)
    np.testing.assert_array_equal(out["label"][0].numpy(), np.asarray(Image.open(item["label"])).astype(int))
    np.testing.assert_array_equal(out["fov"][0].numpy(), np.asarray(Image.open(item["fov"])) // 255)
    assert str(out["label"].meta["filename_or_obj"]).endswith("Image_01L_1stHO.png")


def test_chase_modes(chase_items):
    item = chase_items[1]
    train = chase_transforms("train", patch_size=(32, 32))(item)
    assert train["image"].shape == (3, 32, 32) and train["label"].shape == train["fov"].shape == (1, 32, 32)
    patches = chase_transforms("train", patch_size=(32, 32), num_patches=3, pos_neg=True)(item)
    assert len(patches) == 3 and all(p["label"].shape == (1, 32, 32) for p in patches)
    unl = chase_transforms("unlabeled", patch_size=(32, 32))(item)
    assert set(unl) >= {"image"} and "label" not in unl or isinstance(unl["label"], str)
    assert unl["image"].shape == (3, 32, 32)
    # the FOV travels with the unlabeled patch (SupMix pastes inside it), cropped alike
    assert unl["fov"].shape == (1, 32, 32) and set(torch.unique(unl["fov"]).tolist()) <= {0, 1}
    unl_no_fov = chase_transforms("unlabeled", patch_size=(32, 32))({"image": item["image"]})
    assert int(unl_no_fov["fov"].min()) == 1
    inf = chase_transforms("infer", scale=0.5)({"image": item["image"]})
    assert inf["image"].shape == (3, 32, 40)
    sized = chase_transforms("eval", spatial_size=(40, 50))(item)
    assert sized["image"].shape == (3, 40, 50) and set(torch.unique(sized["label"]).tolist()) <= {0, 1}
    no_fov = chase_transforms("eval", scale=0.5)({k: v for k, v in item.items() if k != "fov"})
    # no FOV mask on disk: evaluation gets an all-ones FOV (metrics over the whole image)
    assert no_fov["label"].shape == (1, 32, 40) and no_fov["fov"].shape == (1, 32, 40)
    assert int(no_fov["fov"].min()) == 1
    with pytest.raises(ValueError, match="mode must be one of"):
        chase_transforms("test")


def test_chase_label_0_255_and_bad_values(chase_items, tmp_path):
    item = dict(chase_items[0])
    label = (np.asarray(Image.open(item["label"])) > 0).astype(np.uint8)
    Image.fromarray(label * 255).save(tmp_path / "l255.png")
    out = chase_transforms("eval")({**item, "label": str(tmp_path / "l255.png")})
    np.testing.assert_array_equal(out["label"][0].numpy(), label)
    Image.fromarray(label * 128).save(tmp_path / "l128.png")
    with pytest.raises(RuntimeError) as err:
        chase_transforms("eval")({**item, "label": str(tmp_path / "l128.png")})
    assert isinstance(_cause(err.value), ValueError) and "l128.png" in str(_cause(err.value))
    assert "binary" in str(_cause(err.value))


def test_image_label_size_mismatch(chase_items, tmp_path):
    item = dict(chase_items[0])
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(RuntimeError) as err:
        chase_transforms("eval")({**item, "label": str(tmp_path / "small.png")})
    msg = str(_cause(err.value))
    assert "Image_01L.jpg" in msg and "small.png" in msg and "(64, 80)" in msg and "(10, 12)" in msg


def test_unreadable_and_missing_files(chase_items, tmp_path):
    data = open(chase_items[0]["image"], "rb").read()
    (tmp_path / "Image_09L.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(RuntimeError) as err:
        chase_transforms("infer")({"image": str(tmp_path / "Image_09L.jpg")})
    assert isinstance(_cause(err.value), ValueError) and "Image_09L.jpg" in str(_cause(err.value))
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(RuntimeError) as err:
        chase_transforms("infer")({"image": str(tmp_path / "text.png")})
    assert "text.png" in str(_cause(err.value))
    with pytest.raises(RuntimeError) as err:
        chase_transforms("infer")({"image": str(tmp_path / "gone.jpg")})
    assert isinstance(_cause(err.value), FileNotFoundError) and "gone.jpg" in str(_cause(err.value))


def test_covid_modes_and_inversion(covid_items):
    item = covid_items["labeled"][0]
    out = covid_transforms("eval", spatial_size=(32, 32))(item)
    assert out["image"].shape == out["label"].shape == (1, 32, 32)
    assert set(torch.unique(out["label"]).tolist()) <= {0, 1, 2}
    native = covid_transforms("eval", spatial_size=None)(item)
    np.testing.assert_array_equal(native["label"][0].numpy(), np.asarray(Image.open(item["label"])))
    train = covid_transforms("train", spatial_size=(40, 40), patch_size=(24, 24))(item)
    assert train["image"].shape == train["label"].shape == (1, 24, 24)
    unl = covid_transforms("unlabeled", spatial_size=(40, 40))(covid_items["unlabeled"][0])
    assert unl["image"].shape == unl["lung"].shape == (1, 40, 40)
    assert "lung" not in covid_transforms("unlabeled", spatial_size=(40, 40), lung_region=False)(covid_items["unlabeled"][0])
    preprocess = covid_transforms("infer", spatial_size=(32, 32))
    inf = preprocess({"image": item["image"]})
    assert inf["image"].shape == (1, 32, 32)
    pred = {"image": inf["image"], "pred": inf["image"].clone()}
    back = Invertd("pred", transform=preprocess, orig_keys="image", nearest_interp=True)(pred)
    assert back["pred"].shape == (1, 48, 72)  # back to the input size
    with pytest.raises(ValueError, match="patch_size or spatial_size"):
        covid_transforms("train", spatial_size=None)


def test_covid_rgb_slice_becomes_gray(covid_items, tmp_path):
    gray = np.asarray(Image.open(covid_items["labeled"][0]["image"]))
    Image.fromarray(np.stack([gray] * 3, -1)).save(tmp_path / "rgb.png")
    out = covid_transforms("infer", spatial_size=None)({"image": str(tmp_path / "rgb.png")})
    assert out["image"].shape == (1, 48, 72)
    np.testing.assert_allclose(out["image"][0].numpy(), gray / 255.0, atol=1e-6)


def test_covid_label_out_of_range(covid_items, tmp_path):
    item = covid_items["labeled"][0]
    bad = np.asarray(Image.open(item["label"])).copy()
    bad[0, 0] = 7
    Image.fromarray(bad).save(tmp_path / "bad_label.png")
    with pytest.raises(RuntimeError) as err:
        covid_transforms("eval")({**item, "label": str(tmp_path / "bad_label.png")})
    msg = str(_cause(err.value))
    assert "bad_label.png" in msg and "[7]" in msg and "0..2" in msg
    Image.fromarray(np.zeros((48, 72, 3), np.uint8)).save(tmp_path / "rgb_label.png")
    with pytest.raises(RuntimeError) as err:
        covid_transforms("eval")({**item, "label": str(tmp_path / "rgb_label.png")})
    assert "single-channel" in str(_cause(err.value))


def test_chase_eval_without_fov_gets_full_mask(tmp_path):
    import os

    from monai_supmix.data import chase_datalist, chase_transforms, write_chase_phantoms

    root = write_chase_phantoms(str(tmp_path / "c"), num_images=2, size=(48, 48))
    item = {k: v for k, v in chase_datalist(root)[0].items() if k != "fov"}
    out = chase_transforms("eval")(item)
    assert out["fov"].shape == (1, 48, 48) and int(out["fov"].min()) == 1
    assert os.path.isfile(item["image"])


def test_lung_region_covers_the_lungs_of_ct_phantoms():
    from monai_supmix.data import make_ct_phantom
    from monai_supmix.data.transforms import LungRegiond

    for seed in range(3):
        phantom = make_ct_phantom(seed, (96, 96))
        image, label = torch.as_tensor(phantom["image"]), torch.as_tensor(phantom["label"])
        out = LungRegiond("image", output_key="lung")({"image": image})
        mask = out["lung"]
        assert mask.shape == (1, 96, 96) and set(torch.unique(mask).tolist()) <= {0, 1}
        assert 0.2 < float(mask.float().mean()) < 0.8  # the lungs, not the whole slice
        assert float(mask[label > 0].float().mean()) > 0.85  # lesions lie inside
    flat = LungRegiond().mask(torch.zeros(1, 8, 8))
    assert int(flat.sum()) == 0


def test_repeat_to_length_fills_batches_of_few_labeled_images():
    from monai_supmix.data import repeat_to_length

    assert repeat_to_length([{"id": 1}], 4) == [{"id": 1}] * 4
    assert [i["id"] for i in repeat_to_length([{"id": 1}, {"id": 2}, {"id": 3}], 4)] == [1, 2, 3, 1, 2, 3]
    assert len(repeat_to_length([{}] * 5, 4)) == 5
    with pytest.raises(ValueError, match="empty"):
        repeat_to_length([], 4)


def test_lung_region_covers_the_lungs_and_fills_lesions_inside():
    """Two dark lungs in a bright body (air outside cut away): the mask is the lungs, lesions inside included."""
    import numpy as np
    import torch

    from monai_supmix.data.transforms import LungRegiond

    yy, xx = np.mgrid[:96, :96]
    image = np.full((96, 96), 0.7, np.float32)  # soft tissue fills the field of view
    left = ((yy - 48) / 30) ** 2 + ((xx - 28) / 14) ** 2 <= 1
    right = ((yy - 48) / 30) ** 2 + ((xx - 68) / 14) ** 2 <= 1
    image[left | right] = 0.1  # aerated lung
    lesion = ((yy - 40) / 5) ** 2 + ((xx - 28) / 5) ** 2 <= 1
    image[lesion] = 0.8  # a consolidation inside the left lung
    out = LungRegiond("image", "lung")({"image": torch.from_numpy(image)[None]})
    mask = out["lung"][0].numpy().astype(bool)
    assert out["lung"].shape == (1, 96, 96) and out["lung"].dtype == torch.uint8
    assert mask[lesion].all()  # holes filled: the lesion is inside the region SupMix may paste into
    inside = (left | right)
    assert (mask & inside).sum() / inside.sum() > 0.95 and (mask & ~inside).sum() / mask.sum() < 0.1
    flat = LungRegiond("image", "lung")({"image": torch.zeros(1, 32, 32)})["lung"]
    assert not flat.any()  # a constant slice has no lungs to find
