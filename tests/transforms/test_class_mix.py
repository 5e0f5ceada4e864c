"""Conventional ClassMix: array ClassMix and dictionary ClassMixd transforms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureTyped

from monai_supmix.transforms import ClassMix, ClassMixd, class_mix


def _pair(seed=0, dims=2, size=8, k=4):
    rng = np.random.RandomState(seed)
    shape = (size,) * dims
    return {
        "image": rng.rand(1, *shape).astype(np.float32),
        "label": rng.randint(0, k, (1, *shape)).astype(np.int64),
        "labeled_image": rng.rand(1, *shape).astype(np.float32),
        "labeled_label": rng.randint(0, k, (1, *shape)).astype(np.int64),
    }


def _check_random_half(d, image, label, mask):
    """The pasted classes are a random half of the classes present in the source and the paste is exact."""
    src = d["labeled_label"]
    m = np.asarray(mask)
    pasted = np.unique(src[m])
    present = np.unique(src)
    assert len(pasted) == math.ceil(len(present) / 2) and set(pasted) <= set(present)
    assert np.array_equal(m, np.isin(src, pasted))
    assert np.array_equal(np.asarray(image), np.where(m, d["labeled_image"], d["image"]))
    assert np.array_equal(np.asarray(label), np.where(m, src, d["label"]))
    return tuple(pasted)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("kind", ["numpy", "torch", "meta"])
def test_array_default_random_half(dims, kind):
    d = _pair(dims=dims)
    convert = {
        "numpy": lambda x: x,
        "torch": torch.as_tensor,
        "meta": lambda x: MetaTensor(torch.as_tensor(x), meta={"filename_or_obj": "a.png"}),
    }[kind]
    t = ClassMix().set_random_state(0)
    assert t.classes == "random_half"
    draws = set()
    for _ in range(6):
        image, label, mask = t(*(convert(d[k]) for k in ("image", "label", "labeled_image", "labeled_label")))
        assert type(image) is type(convert(d["image"])) and type(label) is type(convert(d["label"]))
        if kind == "meta":
            assert image.meta["filename_or_obj"] == "a.png" and label.meta["filename_or_obj"] == "a.png"
        draws.add(_check_random_half(d, image, label, mask))
    assert len(draws) > 1


def test_array_fixed_classes_and_soft_pseudo_labels():
    d = _pair(k=3)
    soft_a = torch.softmax(torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(0)), 0)
    soft_b = torch.softmax(torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(1)), 0)
    image_a, image_b = torch.as_tensor(d["image"]), torch.as_tensor(d["labeled_image"])
    image, label, mask = ClassMix([0, 2])(image_a, soft_a, image_b, soft_b)
    arg_b = soft_b.argmax(0, keepdim=True)
    assert torch.equal(mask, (arg_b == 0) | (arg_b == 2))
    m = mask.expand_as(label)
    assert torch.equal(label[~m], soft_a[~m])
    assert torch.equal(label[m], torch.movedim(torch.nn.functional.one_hot(arg_b[0], 3), -1, 0).float()[m])
    assert torch.equal(image, torch.where(mask, image_b, image_a))


def test_array_matches_functional():
    d = _pair()
    out = ClassMix([1, 3])(d["image"], d["label"], d["labeled_image"], d["labeled_label"])
    ref = class_mix(*(torch.as_tensor(d[k])[None] for k in ("image", "label", "labeled_image", "labeled_label")), [1, 3])
    for a, b in zip(out, ref):
        assert np.array_equal(a, b[0].numpy())


def test_dictionary_in_compose():
    d = _pair(dims=3, size=6)
    pipeline = Compose([EnsureTyped(keys=list(d)), ClassMixd(mask_key="m")])
    pipeline.set_random_state(1)
    out = pipeline(dict(d))
    assert isinstance(out["image"], MetaTensor) and out["m"].shape == (1, 6, 6, 6)
    _check_random_half(d, out["image"].as_tensor(), out["label"].as_tensor(), out["m"])


