"""SupervisedClassMix (array) and SupervisedClassMixd (dictionary) transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import CacheDataset, DataLoader, MetaTensor
from monai.transforms import Compose, EnsureTyped, RandomizableTransform

from monai_supmix.transforms import (
    SupervisedClassMix,
    SupervisedClassMixd,
    SupervisedClassMixD,
    SupervisedClassMixDict,
)

AFFINE = torch.diag(torch.tensor([0.5, 0.5, 2.0, 1.0], dtype=torch.float64))


def _item(seed=0, dims=2, size=8):
    rng = np.random.RandomState(seed)
    shape = (size,) * dims
    return {
        "image": rng.rand(3, *shape).astype(np.float32),
        "label": rng.randint(0, 2, (1, *shape)).astype(np.int64),
        "labeled_image": rng.rand(3, *shape).astype(np.float32),
        "labeled_label": rng.randint(0, 3, (1, *shape)).astype(np.int64),
    }


def _convert(kind, x, name="u.nii.gz"):
    if kind == "numpy":
        return x
    if kind == "torch":
        return torch.as_tensor(x)
    return MetaTensor(torch.as_tensor(x), affine=AFFINE, meta={"filename_or_obj": name})


def _check_exact(d, out_image, out_label, mask, classes):
    m = np.asarray(mask)
    assert m.dtype == bool and m.shape == (1, *d["image"].shape[1:])
    assert np.array_equal(m, np.isin(d["labeled_label"], classes))
    oi, ol = np.asarray(out_image), np.asarray(out_label)
    mi = np.broadcast_to(m, oi.shape)
    assert np.array_equal(oi[mi], d["labeled_image"][mi]) and np.array_equal(oi[~mi], d["image"][~mi])
    assert np.array_equal(ol[m], d["labeled_label"][m]) and np.array_equal(ol[~m], d["label"][~m])
    assert oi.dtype == d["image"].dtype and ol.dtype == d["label"].dtype


def test_aliases_and_base_classes():
    assert SupervisedClassMixD is SupervisedClassMixd and SupervisedClassMixDict is SupervisedClassMixd
    assert isinstance(SupervisedClassMix([1]), RandomizableTransform)
    assert isinstance(SupervisedClassMixd(classes=[1]), RandomizableTransform)
    assert {b.value for b in SupervisedClassMix.backend} == {"torch", "numpy"}


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("kind", ["numpy", "torch", "meta"])
def test_array_types_metadata_and_exactness(dims, kind):
    d = _item(dims=dims)
    image, label = _convert(kind, d["image"]), _convert(kind, d["label"], "u_label.nii.gz")
    out_image, out_label, mask = SupervisedClassMix(classes=[1, 2])(
        image, label, _convert(kind, d["labeled_image"], "l.nii.gz"), _convert(kind, d["labeled_label"], "l_label.nii.gz")
    )
    assert type(out_image) is type(image) and type(out_label) is type(label)
    assert isinstance(mask, np.ndarray if kind == "numpy" else torch.Tensor)
    if kind == "meta":
        assert out_image.meta["filename_or_obj"] == "u.nii.gz" and out_label.meta["filename_or_obj"] == "u_label.nii.gz"
        assert torch.equal(out_image.affine, AFFINE) and torch.equal(out_label.affine, AFFINE)
    _check_exact(d, out_image, out_label, mask, [1, 2])


def test_array_soft_pseudo_label_and_onehot_gt():
    d = _item()
    soft = torch.softmax(torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(0)), 0)
    gt = torch.as_tensor(d["labeled_label"])
    onehot = torch.movedim(torch.nn.functional.one_hot(gt[0], 3), -1, 0).float()
    image, label, mask = SupervisedClassMix([2])(torch.as_tensor(d["image"]), soft, torch.as_tensor(d["labeled_image"]), onehot)
    assert torch.equal(mask, gt == 2)
    m = mask.expand_as(label)
    assert torch.equal(label[~m], soft[~m]) and torch.equal(label[m], onehot[m])
    assert torch.equal(image, torch.where(mask, torch.as_tensor(d["labeled_image"]), torch.as_tensor(d["image"])))


def test_prob_zero_is_identity():
    d = _item()
    image, label, mask = SupervisedClassMix([1], prob=0.0)(d["image"], d["label"], d["labeled_image"], d["labeled_label"])
    assert image is d["image"] and label is d["label"]
    assert isinstance(mask, np.ndarray) and mask.dtype == bool and mask.shape == (1, 8, 8) and not mask.any()
    t = torch.as_tensor(d["image"])
    image, _, mask = SupervisedClassMix([1], prob=0.0)(t, torch.as_tensor(d["label"]), t, torch.as_tensor(d["labeled_label"]))
    assert image is t and isinstance(mask, torch.Tensor) and not mask.any()


@pytest.mark.parametrize("classes", ["random_half", "inverse_frequency", [1]])
def test_set_random_state_determinism(classes):
    d = _item()
    outs = []
    for _ in range(2):
        t = SupervisedClassMix(classes, prob=0.5, num_classes=3)
        t.set_random_state(42)
        outs.append([t(d["image"], d["label"], d["labeled_image"], d["labeled_label"])[2] for _ in range(8)])
    assert all(np.array_equal(a, b) for a, b in zip(*outs))
    applied = [bool(m.any()) for m in outs[0]]
    assert any(applied) and not all(applied)  # prob=0.5 over 8 draws with this seed


def test_randomize_false_reuses_the_previous_draw():
    d = _item()
    t = SupervisedClassMix("random_half").set_random_state(3)
    first = t(d["image"], d["label"], d["labeled_image"], d["labeled_label"])[2]
    for _ in range(3):
        again = t(d["image"], d["label"], d["labeled_image"], d["labeled_label"], randomize=False)[2]
        assert np.array_equal(first, again)


def test_policy_with_class_frequencies():
    d = _item()
    _, _, mask = SupervisedClassMix("rarest", class_frequencies=[900, 30, 70])(
        d["image"], d["label"], d["labeled_image"], d["labeled_label"]
    )
    assert np.array_equal(mask, np.isin(d["labeled_label"], [1, 2]))
    _, _, mask = SupervisedClassMix("rarest", class_frequencies=[900, 30, 70], num_select=1)(
        d["image"], d["label"], d["labeled_image"], d["labeled_label"]
    )
    assert np.array_equal(mask, d["labeled_label"] == 1)


def test_classes_absent_from_the_item_paste_nothing():
    d = _item()
    d["labeled_label"] = np.zeros_like(d["labeled_label"])
    image, label, mask = SupervisedClassMix([1, 2])(d["image"], d["label"], d["labeled_image"], d["labeled_label"])
    assert not mask.any() and np.array_equal(image, d["image"]) and np.array_equal(label, d["label"])


@pytest.mark.parametrize("dims", [2, 3])
def test_dictionary_exactness_mask_key_and_prob(dims):
    d = _item(dims=dims)
    out = SupervisedClassMixd(classes=[2], mask_key="mix_mask")(dict(d))
    _check_exact(d, out["image"], out["label"], out["mix_mask"], [2])
    assert out["labeled_image"] is d["labeled_image"] and out["labeled_label"] is d["labeled_label"]
    out = SupervisedClassMixd(classes=[1], prob=0.0, mask_key="m")(dict(d))
    assert not out["m"].any() and out["image"] is d["image"] and out["label"] is d["label"]
    out = SupervisedClassMixd(classes=[1])(dict(d))
    assert "mask" not in out and set(out) == set(d)


def test_dictionary_custom_keys_and_metatensor():
    d = _item()
    data = {
        "img": _convert("meta", d["image"]),
        "pseudo": _convert("meta", d["label"], "p.nii.gz"),
        "l_img": _convert("meta", d["labeled_image"], "l.nii.gz"),
        "l_seg": _convert("meta", d["labeled_label"], "ls.nii.gz"),
    }
    out = SupervisedClassMixD(keys=("img", "pseudo"), labeled_keys=("l_img", "l_seg"), classes=[1], mask_key="m")(data)
    assert isinstance(out["img"], MetaTensor) and out["img"].meta["filename_or_obj"] == "u.nii.gz"
    assert out["pseudo"].meta["filename_or_obj"] == "p.nii.gz" and torch.equal(out["img"].affine, AFFINE)
    _check_exact(d, out["img"], out["pseudo"], out["m"], [1])


def test_dictionary_set_random_state_propagates():
    d = _item()
    runs = []
    for _ in range(2):
        t = SupervisedClassMixd(classes="random_half", prob=0.6, mask_key="m")
        assert t.set_random_state(11) is t
        runs.append([t(dict(d))["m"] for _ in range(8)])
    assert all(np.array_equal(a, b) for a, b in zip(*runs))
    assert len({m.tobytes() for m in runs[0]}) > 1


def test_errors():
    d = _item()
    with pytest.raises(KeyError, match=r"missing key\(s\) \['labeled_label'\]"):
        SupervisedClassMixd(classes=[1])({k: v for k, v in d.items() if k != "labeled_label"})
    with pytest.raises(KeyError, match=r"missing key\(s\) \['image'\]"):
        SupervisedClassMixd(classes=[1])({k: v for k, v in d.items() if k != "image"})
    partial = {k: v for k, v in d.items() if k != "labeled_image"}
    assert SupervisedClassMixd(classes=[1], allow_missing_keys=True)(partial) == partial
    with pytest.raises(ValueError, match="keys and labeled_keys must each name"):
        SupervisedClassMixd(keys="image", classes=[1])
    with pytest.raises(ValueError, match="classes must not be empty"):
        SupervisedClassMix(classes=[])
    with pytest.raises(ValueError, match="classes must not be empty"):
        SupervisedClassMixd(classes=[])
    with pytest.raises(ValueError, match="one of"):
        SupervisedClassMix(classes="rare")
    with pytest.raises(TypeError, match="must be a numpy array or a tensor"):
        SupervisedClassMix([1])([1, 2], d["label"], d["labeled_image"], d["labeled_label"])
    with pytest.raises(TypeError, match="must be a numpy array or a tensor"):
        SupervisedClassMixd(classes=[1])({**d, "labeled_label": "seg.png"})
    with pytest.raises(ValueError, match="expected integer class indices"):
        SupervisedClassMix([1])(d["image"], d["label"], d["labeled_image"], d["labeled_label"].astype(np.float32))
    with pytest.raises(ValueError, match="expected integer class indices"):
        SupervisedClassMix("rarest")(d["image"], d["label"], d["labeled_image"], d["labeled_label"].astype(np.float32))
    with pytest.raises(ValueError, match=r"\(1, 3, 8, 8\) and `image_l` \(1, 3, 4, 4\) must have the same shape"):
        SupervisedClassMix([1])(d["image"], d["label"], d["labeled_image"][:, :4, :4], d["labeled_label"][:, :4, :4])
    with pytest.raises(ValueError, match=r"`image_u` \(1, 3, 8, 8\) and `label_u` \(1, 1, 8, 4\) must share"):
        SupervisedClassMix([1])(d["image"], d["label"][..., :4], d["labeled_image"], d["labeled_label"])
    with pytest.raises(ValueError, match=r"indices \[3\] outside"):
        SupervisedClassMix([3], num_classes=3)(d["image"], d["label"], d["labeled_image"], d["labeled_label"])
    with pytest.raises(ValueError, match=r"`label_l` holds class indices in \[0, 2\], outside \[0, 1\]"):
        SupervisedClassMix([1], num_classes=2)(d["image"], d["label"], d["labeled_image"], d["labeled_label"])


def test_pipeline_compose_cache_dataset_dataloader_workers():
    data = [_item(seed=i) for i in range(6)]
    pipeline = Compose(
        [EnsureTyped(keys=list(data[0])), SupervisedClassMixd(classes=[1, 2], prob=1.0, mask_key="mask")]
    )
    dataset = CacheDataset(data, transform=pipeline, cache_rate=1.0, progress=False, num_workers=1)
    loader = DataLoader(dataset, batch_size=3, num_workers=2)
    batches = list(loader)
    assert len(batches) == 2
    for batch, start in zip(batches, (0, 3)):
        assert batch["image"].shape == (3, 3, 8, 8) and batch["mask"].shape == (3, 1, 8, 8)
        for j in range(3):
            item = data[start + j]
            src = torch.as_tensor(item["labeled_label"])
            mask = batch["mask"][j]
            assert torch.equal(mask, (src == 1) | (src == 2))
            expected_image = torch.where(mask, torch.as_tensor(item["labeled_image"]), torch.as_tensor(item["image"]))
            assert torch.equal(batch["image"][j].as_tensor(), expected_image)
            assert torch.equal(batch["label"][j].as_tensor(), torch.where(mask, src, torch.as_tensor(item["label"])))


def test_the_transform_is_the_method_the_trainer_runs():
    """Region, feathered edges and the flipped source: the array/dict transforms give the engine's SupMix."""
    import numpy as np

    from monai_supmix.transforms import SupervisedClassMix, SupervisedClassMixd, supervised_class_mix
    from monai_supmix.transforms.functional import random_flips

    torch.manual_seed(0)
    image_u, pseudo = torch.rand(1, 16, 16), torch.zeros(1, 16, 16, dtype=torch.long)
    image_l = torch.rand(1, 16, 16)
    label_l = torch.zeros(1, 16, 16, dtype=torch.long)
    label_l[:, 2:6, 3:9] = 1  # an asymmetric blob: a flip moves it
    region = torch.zeros(1, 16, 16)
    region[:, :, :12] = 1
    mix = SupervisedClassMix(classes=[1], feather_sigma=1.0, flip_source=True)
    mix.set_random_state(3)
    image, label, mask = mix(image_u, pseudo, image_l, label_l, region=region)
    assert not mask[:, :, 12:].any()  # nothing pasted outside the region
    # the same result from the functional code the trainer calls, with the same flip draw
    flip_seed = np.random.RandomState(3)
    flip_seed.random_sample()  # the prob draw of RandomizableTransform.randomize
    src_img, src_lab = random_flips(image_l[None], label_l[None], np.random.RandomState(flip_seed.randint(2**31)))
    expected = supervised_class_mix(image_u[None], pseudo[None], src_img, src_lab, [[1]], num_classes=2,
                                    region=region[None], feather_sigma=1.0)
    torch.testing.assert_close(image, expected[0][0])
    torch.testing.assert_close(label, expected[1][0])
    soft = (image != image_u) & ~mask  # feathered: content fades in just outside the hard mask
    assert soft.any() and not (label[~mask] != 0).any()
    d = SupervisedClassMixd(classes=[1], feather_sigma=1.0, flip_source=True, region_key="lung", mask_key="m")
    d.set_random_state(3)
    out = d({"image": image_u, "label": pseudo, "labeled_image": image_l, "labeled_label": label_l, "lung": region})
    assert not out["m"][:, :, 12:].any() and out["m"].any()
