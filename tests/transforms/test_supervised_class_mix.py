"""SupervisedClassMix (array) and SupervisedClassMixd (dictionary) transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import CacheDataset, DataLoader
from monai.transforms import Compose, EnsureTyped

from monai_supmix.transforms import SupervisedClassMix, SupervisedClassMixd
from test_class_paste_common import paired_item  # the shared pair of items (this folder is on sys.path under pytest)


def test_array_soft_pseudo_label_and_onehot_gt():
    d = paired_item()
    soft = torch.softmax(torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(0)), 0)
    gt = torch.as_tensor(d["labeled_label"])
    onehot = torch.movedim(torch.nn.functional.one_hot(gt[0], 3), -1, 0).float()
    image, label, mask = SupervisedClassMix([2])(torch.as_tensor(d["image"]), soft, torch.as_tensor(d["labeled_image"]), onehot)
    assert torch.equal(mask, gt == 2)
    m = mask.expand_as(label)
    assert torch.equal(label[~m], soft[~m]) and torch.equal(label[m], onehot[m])
    assert torch.equal(image, torch.where(mask, torch.as_tensor(d["labeled_image"]), torch.as_tensor(d["image"])))


def test_policy_with_class_frequencies():
    d = paired_item()
    _, _, mask = SupervisedClassMix("rarest", class_frequencies=[900, 30, 70])(
        d["image"], d["label"], d["labeled_image"], d["labeled_label"]
    )
    assert np.array_equal(mask, np.isin(d["labeled_label"], [1, 2]))
    _, _, mask = SupervisedClassMix("rarest", class_frequencies=[900, 30, 70], num_select=1)(
        d["image"], d["label"], d["labeled_image"], d["labeled_label"]
    )
    assert np.array_equal(mask, d["labeled_label"] == 1)


def test_errors_of_supmix():
    """SupMix's own messages (the shared ones: test_class_paste_common.py)."""
    d = paired_item()
    with pytest.raises(ValueError, match="expected integer class indices"):
        SupervisedClassMix("rarest")(d["image"], d["label"], d["labeled_image"], d["labeled_label"].astype(np.float32))
    with pytest.raises(ValueError, match=r"`image_u` \(1, 3, 8, 8\) and `label_u` \(1, 1, 8, 4\) must share"):
        SupervisedClassMix([1])(d["image"], d["label"][..., :4], d["labeled_image"], d["labeled_label"])
    with pytest.raises(ValueError, match=r"`label_l` holds class indices in \[0, 2\], outside \[0, 1\]"):
        SupervisedClassMix([1], num_classes=2)(d["image"], d["label"], d["labeled_image"], d["labeled_label"])


def test_pipeline_compose_cache_dataset_dataloader_workers():
    data = [paired_item(seed=i) for i in range(6)]
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
