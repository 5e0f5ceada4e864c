"""SupervisedClassMix / ClassMix array and dictionary transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import CacheDataset, DataLoader, MetaTensor
from monai.transforms import Compose, EnsureTyped

from monai_supmix.transforms import (
    ClassMix,
    ClassMixd,
    SupervisedClassMix,
    SupervisedClassMixd,
    SupervisedClassMixD,
    SupervisedClassMixDict,
)


def _item(seed=0, dims=2, size=8):
    rng = np.random.RandomState(seed)
    shape = (size,) * dims
    return {
        "image": rng.rand(3, *shape).astype(np.float32),
        "label": rng.randint(0, 2, (1, *shape)).astype(np.int64),
        "labeled_image": rng.rand(3, *shape).astype(np.float32),
        "labeled_label": rng.randint(0, 3, (1, *shape)).astype(np.int64),
    }


def test_aliases():
    assert SupervisedClassMixD is SupervisedClassMixd and SupervisedClassMixDict is SupervisedClassMixd


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("kind", ["numpy", "torch", "meta"])
def test_array_types_and_exactness(dims, kind):
    d = _item(dims=dims)
    convert = {
        "numpy": lambda x: x,
        "torch": torch.as_tensor,
        "meta": lambda x: MetaTensor(torch.as_tensor(x), meta={"filename_or_obj": "u.png"}),
    }[kind]
    image, label = convert(d["image"]), convert(d["label"])
    out_image, out_label, mask = SupervisedClassMix(classes=[1, 2])(image, label, convert(d["labeled_image"]), convert(d["labeled_label"]))
    assert type(out_image) is type(image) and type(out_label) is type(label)
    if kind == "meta":
        assert out_image.meta["filename_or_obj"] == "u.png"
    m = np.asarray(mask)
    assert m.shape == (1, *d["image"].shape[1:]) and np.array_equal(m, np.isin(d["labeled_label"], [1, 2]))
    oi, ol = np.asarray(out_image), np.asarray(out_label)
    mi = np.broadcast_to(m, oi.shape)
    assert np.array_equal(oi[mi], d["labeled_image"][mi]) and np.array_equal(oi[~mi], d["image"][~mi])
    assert np.array_equal(ol[m], d["labeled_label"][m]) and np.array_equal(ol[~m], d["label"][~m])


def test_prob_zero_is_identity_and_seed_determinism():
    d = _item()
    image, label, mask = SupervisedClassMix([1], prob=0.0)(d["image"], d["label"], d["labeled_image"], d["labeled_label"])
    assert image is d["image"] and label is d["label"] and not mask.any()
    outs = []
    for _ in range(2):
        t = SupervisedClassMix("random_half", prob=0.5)
        t.set_random_state(42)
        outs.append([t(d["image"], d["label"], d["labeled_image"], d["labeled_label"])[2] for _ in range(5)])
    for a, b in zip(*outs):
        assert np.array_equal(a, b)


def test_dictionary_with_mask_key_and_classmix():
    d = _item()
    out = SupervisedClassMixd(classes=[2], mask_key="mix_mask")(dict(d))
    assert np.array_equal(out["mix_mask"], d["labeled_label"] == 2)
    assert np.array_equal(out["label"][out["mix_mask"]], d["labeled_label"][out["mix_mask"]])
    out = ClassMixd(keys=("image", "label"), labeled_keys=("labeled_image", "labeled_label"), classes=[0], mask_key="m")(dict(d))
    assert np.array_equal(out["m"], d["labeled_label"] == 0)
    out = SupervisedClassMixd(classes=[1], prob=0.0, mask_key="m")(dict(d))
    assert not out["m"].any() and np.array_equal(out["image"], d["image"])


def test_errors():
    d = _item()
    with pytest.raises(KeyError, match=r"missing key\(s\) \['labeled_label'\]"):
        SupervisedClassMixd(classes=[1])({k: v for k, v in d.items() if k != "labeled_label"})
    with pytest.raises(ValueError, match="must not be empty"):
        SupervisedClassMix(classes=[])
    with pytest.raises(ValueError, match="one of"):
        ClassMix(classes="half")
    with pytest.raises(TypeError, match="must be a numpy array or a tensor"):
        SupervisedClassMix([1])([1, 2], d["label"], d["labeled_image"], d["labeled_label"])
    with pytest.raises(ValueError, match="expected integer class indices"):
        SupervisedClassMix([1])(d["image"], d["label"], d["labeled_image"], d["labeled_label"].astype(np.float32))
    with pytest.raises(ValueError, match="must have the same shape"):
        SupervisedClassMix([1])(d["image"], d["label"], d["labeled_image"][:, :4, :4], d["labeled_label"][:, :4, :4])


def test_pipeline_with_cache_dataset_and_workers():
    data = [_item(seed=i) for i in range(6)]
    pipeline = Compose([EnsureTyped(keys=list(data[0])), SupervisedClassMixd(classes=[1, 2], prob=1.0, mask_key="mask")])
    dataset = CacheDataset(data, transform=pipeline, cache_rate=1.0, progress=False)
    loader = DataLoader(dataset, batch_size=3, num_workers=2)
    batches = list(loader)
    assert len(batches) == 2
    for batch, start in zip(batches, (0, 3)):
        for j in range(3):
            src = torch.as_tensor(data[start + j]["labeled_label"])
            assert torch.equal(batch["mask"][j], (src == 1) | (src == 2))
            assert torch.equal(batch["label"][j][batch["mask"][j]], src[batch["mask"][j]])
