"""Exactness of the batched functional SupMix / ClassMix and the class policies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from monai_supmix.transforms import class_frequencies, class_mix, select_classes, supervised_class_mix


def _batch(dims=2, b=2, c=3, k=3, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (size,) * dims
    image_u, image_l = torch.rand(b, c, *shape, generator=g), torch.rand(b, c, *shape, generator=g)
    label_u = torch.randint(0, k, (b, 1, *shape), generator=g)
    label_l = torch.randint(0, k, (b, 1, *shape), generator=g)
    return image_u, label_u, image_l, label_l


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("fn", [supervised_class_mix, class_mix])
def test_exact_inside_and_outside_mask(dims, fn):
    image_u, label_u, image_l, label_l = _batch(dims)
    image, label, mask = fn(image_u, label_u, image_l, label_l, [1, 2])
    expected = (label_l == 1) | (label_l == 2)
    assert mask.dtype == torch.bool and mask.shape == (2, 1, *image_u.shape[2:])
    assert torch.equal(mask, expected)
    m = mask.expand_as(image)
    assert torch.equal(image[m], image_l[m]) and torch.equal(image[~m], image_u[~m])
    assert torch.equal(label[mask], label_l[mask]) and torch.equal(label[~mask], label_u[~mask])
    assert image.dtype == image_u.dtype and label.dtype == label_u.dtype and image.device == image_u.device


def test_per_sample_classes_and_bool_table():
    image_u, label_u, image_l, label_l = _batch()
    _, _, mask = supervised_class_mix(image_u, label_u, image_l, label_l, [[1], []])
    assert torch.equal(mask[0], label_l[0] == 1) and not mask[1].any()
    table = torch.tensor([[False, True, False], [True, False, True]])
    _, _, mask = supervised_class_mix(image_u, label_u, image_l, label_l, table)
    assert torch.equal(mask[1], (label_l[1] == 0) | (label_l[1] == 2))


def test_soft_pseudo_label_stays_soft_outside():
    image_u, _, image_l, label_l = _batch()
    soft = torch.softmax(torch.randn(2, 3, 8, 8), dim=1)
    onehot_l = torch.nn.functional.one_hot(label_l[:, 0], 3).permute(0, 3, 1, 2).float()
    _, label, mask = supervised_class_mix(image_u, soft, image_l, onehot_l, [2])
    m = mask.expand_as(label)
    assert torch.equal(label[~m], soft[~m])
    inside = label.permute(0, 2, 3, 1)[mask[:, 0]]
    assert torch.equal(inside, torch.tensor([0.0, 0.0, 1.0]).expand_as(inside))


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"classes": []}, ValueError, "must not be empty"),
        ({"classes": [5]}, ValueError, "outside"),
        ({"classes": [-1]}, ValueError, "outside"),
    ],
)
def test_bad_classes(kwargs, error, message):
    image_u, label_u, image_l, label_l = _batch()
    with pytest.raises(error, match=message):
        supervised_class_mix(image_u, label_u, image_l, label_l, num_classes=3, **kwargs)


def test_bad_inputs():
    image_u, label_u, image_l, label_l = _batch()
    with pytest.raises(ValueError, match=r"`image_u` \(2, 3, 8, 8\) and `image_l` \(2, 3, 4, 4\)"):
        supervised_class_mix(image_u, label_u, image_l[..., :4, :4], label_l[..., :4, :4], [1])
    with pytest.raises(ValueError, match="`label_l` is a 1-channel label of dtype torch.float32: expected integer"):
        supervised_class_mix(image_u, label_u, image_l, label_l.float(), [1])
    with pytest.raises(TypeError, match="`image_u` must be a torch.Tensor"):
        supervised_class_mix(image_u.numpy(), label_u, image_l, label_l, [1])
    with pytest.raises(ValueError, match="must share the batch size and spatial shape"):
        supervised_class_mix(image_u, label_u[..., :4], image_l, label_l, [1])
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\], outside \[0, 1\]"):
        supervised_class_mix(image_u, label_u, image_l, label_l, [1], num_classes=2)


def test_policies():
    label = torch.zeros(2, 1, 10, 10, dtype=torch.long)
    label[:, :, :2] = 1  # 20 %
    label[:, :, 2:3] = 2  # 10 %
    assert select_classes("rarest", label, 3) == [[1, 2], [1, 2]]
    assert select_classes("rarest", label, 3, num_select=1) == [[2], [2]]
    assert select_classes([1], label, 3) == [[1], [1]]
    halves = select_classes("random_half", label, 3, generator=torch.Generator().manual_seed(0))
    assert all(len(h) == 2 and set(h) <= {0, 1, 2} for h in halves)
    again = select_classes("random_half", label, 3, generator=torch.Generator().manual_seed(0))
    assert halves == again
    inv = select_classes("inverse_frequency", label, 3, generator=np.random.RandomState(0))
    assert all(2 in s for s in inv)  # the rarest class is always drawn (probability 1)
    torch.testing.assert_close(class_frequencies(label, 3), torch.tensor([140.0, 40.0, 20.0]))
    with pytest.raises(ValueError, match="unknown class policy"):
        select_classes("rare", label, 3)
    with pytest.raises(ValueError, match="outside"):
        select_classes([3], label, 3)


@settings(max_examples=25, deadline=None)
@given(
    dims=st.sampled_from([2, 3]),
    k=st.integers(2, 5),
    size=st.integers(2, 6),
    classes=st.lists(st.integers(0, 4), min_size=1, max_size=4),
    seed=st.integers(0, 1000),
)
def test_property_mask_is_isin(dims, k, size, classes, seed):
    classes = [c % k for c in classes]
    image_u, label_u, image_l, label_l = _batch(dims, b=2, c=1, k=k, size=size, seed=seed)
    image, label, mask = supervised_class_mix(image_u, label_u, image_l, label_l, classes, num_classes=k)
    assert torch.equal(mask, torch.isin(label_l, torch.tensor(classes)))
    assert torch.equal(label, torch.where(mask, label_l, label_u))
    assert torch.equal(image, torch.where(mask, image_l, image_u))
