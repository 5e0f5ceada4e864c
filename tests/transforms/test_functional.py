"""Exactness and validation of the batched functional SupMix / ClassMix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from monai_supmix.transforms import class_frequencies, class_mix, supervised_class_mix


def _batch(dims=2, b=2, c=3, k=3, size=8, seed=0, dtype=torch.float32, label_dtype=torch.int64):
    g = torch.Generator().manual_seed(seed)
    shape = (size,) * dims
    image_u = torch.rand(b, c, *shape, generator=g).to(dtype)
    image_l = torch.rand(b, c, *shape, generator=g).to(dtype)
    label_u = torch.randint(0, k, (b, 1, *shape), generator=g).to(label_dtype)
    label_l = torch.randint(0, k, (b, 1, *shape), generator=g).to(label_dtype)
    return image_u, label_u, image_l, label_l


def _onehot(index, k):
    return torch.movedim(torch.nn.functional.one_hot(index[:, 0].long(), k), -1, 1).float()


def _assert_exact(image, label, mask, image_u, label_u, image_l, gt_index):
    """Inside the mask: labeled image and GT class; outside: unlabeled image and pseudo-label."""
    m = mask.expand_as(image)
    assert torch.equal(image[m], image_l[m])
    assert torch.equal(image[~m], image_u[~m])
    assert torch.equal(label[mask], gt_index[mask].to(label.dtype))
    assert torch.equal(label[~mask], label_u[~mask])


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("fn", [supervised_class_mix, class_mix])
@pytest.mark.parametrize("dtype, label_dtype", [(torch.float32, torch.int64), (torch.float64, torch.int32), (torch.float16, torch.uint8)])
def test_exact_index_labels(dims, fn, dtype, label_dtype):
    image_u, label_u, image_l, label_l = _batch(dims, dtype=dtype, label_dtype=label_dtype)
    image, label, mask = fn(image_u, label_u, image_l, label_l, [1, 2])
    assert mask.dtype == torch.bool and mask.shape == (2, 1, *image_u.shape[2:])
    assert torch.equal(mask, torch.isin(label_l, torch.tensor([1, 2]).to(label_dtype)))
    assert 0 < int(mask.sum()) < mask.numel()
    _assert_exact(image, label, mask, image_u, label_u, image_l, label_l)
    assert image.dtype == dtype and label.dtype == label_dtype
    assert image.device == image_u.device and label.device == label_u.device and mask.device == image_u.device
    assert image.shape == image_u.shape and label.shape == label_u.shape


@pytest.mark.parametrize("dims", [2, 3])
def test_soft_pseudo_label_stays_soft_outside_and_onehot_inside(dims):
    image_u, _, image_l, label_l = _batch(dims)
    soft = torch.softmax(torch.randn(2, 3, *image_u.shape[2:], generator=torch.Generator().manual_seed(1)), dim=1)
    image, label, mask = supervised_class_mix(image_u, soft, image_l, _onehot(label_l, 3), [2])
    assert torch.equal(mask, label_l == 2)
    m = mask.expand_as(label)
    assert torch.equal(label[~m], soft[~m])
    assert torch.equal(label[m], _onehot(label_l, 3)[m])
    assert label.dtype == soft.dtype and label.shape == soft.shape
    assert torch.equal(image, torch.where(mask, image_l, image_u))


def test_index_pseudo_label_with_onehot_gt_and_soft_source():
    image_u, label_u, image_l, label_l = _batch()
    _, label, mask = supervised_class_mix(image_u, label_u, image_l, _onehot(label_l, 3), [0, 2])
    assert torch.equal(mask, (label_l == 0) | (label_l == 2))
    assert torch.equal(label, torch.where(mask, label_l, label_u)) and label.shape[1] == 1
    # ClassMix with a soft source pseudo-label: its argmax decides the mask
    soft_b = torch.softmax(torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2)), dim=1)
    arg_b = soft_b.argmax(1, keepdim=True)
    _, label, mask = class_mix(image_u, label_u, image_l, soft_b, [1])
    assert torch.equal(mask, arg_b == 1) and torch.equal(label, torch.where(mask, arg_b, label_u))


def test_per_sample_classes_and_bool_table():
    image_u, label_u, image_l, label_l = _batch()
    image, label, mask = supervised_class_mix(image_u, label_u, image_l, label_l, [[1], []])
    assert torch.equal(mask[0], label_l[0] == 1) and not mask[1].any()
    assert torch.equal(image[1], image_u[1]) and torch.equal(label[1], label_u[1])
    table = torch.tensor([[False, True, False], [True, False, True]])
    _, _, mask = supervised_class_mix(image_u, label_u, image_l, label_l, table)
    assert torch.equal(mask[0], label_l[0] == 1)
    assert torch.equal(mask[1], (label_l[1] == 0) | (label_l[1] == 2))
    _, _, mask = supervised_class_mix(image_u, label_u, image_l, label_l, torch.tensor([2]))
    assert torch.equal(mask, label_l == 2)


def test_classes_above_labels_without_num_classes_select_nothing():
    image_u, label_u, image_l, label_l = _batch(k=2)
    image, label, mask = supervised_class_mix(image_u, label_u, image_l, label_l, [7])
    assert not mask.any() and torch.equal(image, image_u) and torch.equal(label, label_u)


def test_inputs_are_not_modified():
    image_u, label_u, image_l, label_l = _batch()
    copies = [t.clone() for t in (image_u, label_u, image_l, label_l)]
    supervised_class_mix(image_u, label_u, image_l, label_l, [1])
    assert all(torch.equal(a, b) for a, b in zip(copies, (image_u, label_u, image_l, label_l)))


def test_class_frequencies():
    label = torch.zeros(2, 1, 10, 10, dtype=torch.long)
    label[:, :, :2] = 1
    label[:, :, 2:3] = 2
    expected = torch.tensor([140.0, 40.0, 20.0])
    torch.testing.assert_close(class_frequencies(label, 3), expected)
    torch.testing.assert_close(class_frequencies(_onehot(label, 3), 3), expected)
    torch.testing.assert_close(class_frequencies(label, 4), torch.tensor([140.0, 40.0, 20.0, 0.0]))
    with pytest.raises(ValueError, match=r"`labels` holds class indices in \[0, 2\], outside \[0, 1\]"):
        class_frequencies(label, 2)


@pytest.mark.parametrize("fn, names", [(supervised_class_mix, ("u", "l")), (class_mix, ("a", "b"))])
def test_shape_errors_name_the_argument(fn, names):
    d, s = names
    image_u, label_u, image_l, label_l = _batch()
    with pytest.raises(ValueError, match=rf"`image_{d}` \(2, 3, 8, 8\) and `image_{s}` \(2, 3, 4, 4\)"):
        fn(image_u, label_u, image_l[..., :4, :4], label_l[..., :4, :4], [1])
    with pytest.raises(ValueError, match=rf"`image_{d}` \(2, 3, 8, 8\) and `label_{d}` \(2, 1, 8, 4\) must share"):
        fn(image_u, label_u[..., :4], image_l, label_l, [1])
    with pytest.raises(ValueError, match=rf"`image_{s}` \(2, 3, 8, 8\) and `label_{s}` \(1, 1, 8, 8\) must share"):
        fn(image_u, label_u, image_l, label_l[:1], [1])
    with pytest.raises(ValueError, match=rf"`image_{d}` \(2, 3, 8, 8\) and `image_{s}` \(1, 3, 8, 8\)"):
        fn(image_u, label_u, image_l[:1], label_l[:1], [1])
    with pytest.raises(ValueError, match=rf"`image_{d}` must have shape"):
        fn(image_u[0], label_u, image_l, label_l, [1])
    with pytest.raises(ValueError, match=rf"`label_{s}` is a 1-channel label of dtype torch.float32: expected integer class indices"):
        fn(image_u, label_u, image_l, label_l.float(), [1])
    with pytest.raises(ValueError, match=rf"`label_{d}` is a 1-channel label of dtype torch.float64: expected integer class indices"):
        fn(image_u, label_u.double(), image_l, label_l, [1])
    with pytest.raises(ValueError, match=rf"`label_{s}` \(2, 2, 8, 8\) has 2 channels, expected 1 \(indices\) or 3"):
        fn(image_u, _onehot(label_u, 3), image_l, torch.zeros(2, 2, 8, 8), [1])


@pytest.mark.parametrize("bad", ["image_u", "label_u", "image_l", "label_l"])
def test_non_tensor_raises_type_error(bad):
    args = dict(zip(("image_u", "label_u", "image_l", "label_l"), _batch()))
    args[bad] = args[bad].numpy()
    with pytest.raises(TypeError, match=f"`{bad}` must be a torch.Tensor"):
        supervised_class_mix(**args, classes=[1])


@pytest.mark.parametrize(
    "classes, num_classes, message",
    [
        ([], 3, "classes must not be empty"),
        ([], None, "classes must not be empty"),
        ([5], 3, r"indices \[5\] outside the label's class range \[0, 2\]"),
        ([-1], None, r"indices \[-1\] outside"),
        ([[1], [3]], 3, r"indices \[3\] outside"),
        ([[1]], 3, r"one list per sample \(B=2\), got 1"),
        (torch.ones(2, 5, dtype=torch.bool), 3, r"selects class indices >= num_classes=3"),
        (torch.ones(3, 3, dtype=torch.bool), 3, r"must have shape \(B=2, num_classes\)"),
    ],
)
def test_bad_classes(classes, num_classes, message):
    image_u, label_u, image_l, label_l = _batch()
    with pytest.raises(ValueError, match=message):
        supervised_class_mix(image_u, label_u, image_l, label_l, classes, num_classes=num_classes)


def test_bad_classes_type_and_label_range():
    image_u, label_u, image_l, label_l = _batch()
    with pytest.raises(TypeError, match="`classes` must be a list of class indices"):
        supervised_class_mix(image_u, label_u, image_l, label_l, "rarest")
    with pytest.raises(ValueError, match=r"`label_l` holds class indices in \[0, 2\], outside \[0, 1\]"):
        supervised_class_mix(image_u, label_u.clamp(max=1), image_l, label_l, [1], num_classes=2)
    with pytest.raises(ValueError, match=r"`label_u` holds class indices in \[0, 2\], outside \[0, 1\]"):
        supervised_class_mix(image_u, label_u, image_l, label_l.clamp(max=1), [1], num_classes=2)
    with pytest.raises(ValueError, match=r"`label_l` holds class indices in \[-1, 2\]"):
        supervised_class_mix(image_u, label_u, image_l, torch.where(label_l == 0, -1, label_l), [1])
    with pytest.raises(ValueError, match=r"`label_l` holds class indices in \[0, 2\], outside \[0, 1\]"):
        supervised_class_mix(image_u, _onehot(label_u.clamp(max=1), 2), image_l, label_l, [1])
    with pytest.raises(ValueError, match="num_classes=4 does not match the 3 channels"):
        supervised_class_mix(image_u, _onehot(label_u, 3), image_l, label_l, [1], num_classes=4)


@settings(max_examples=25, deadline=None)
@given(
    dims=st.sampled_from([2, 3]),
    k=st.integers(2, 5),
    batch=st.integers(1, 3),
    shape=st.lists(st.integers(1, 6), min_size=3, max_size=3),
    classes=st.lists(st.integers(0, 4), min_size=1, max_size=4),
    soft=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_property_mask_is_isin_and_paste_is_exact(dims, k, batch, shape, classes, soft, seed):
    classes = [c % k for c in classes]
    g = torch.Generator().manual_seed(seed)
    spatial = tuple(shape[:dims])
    image_u, image_l = torch.randn(2, batch, 2, *spatial, generator=g)
    label_u = torch.randint(0, k, (batch, 1, *spatial), generator=g)
    label_l = torch.randint(0, k, (batch, 1, *spatial), generator=g)
    pseudo = torch.softmax(torch.randn(batch, k, *spatial, generator=g), 1) if soft else label_u
    image, label, mask = supervised_class_mix(image_u, pseudo, image_l, label_l, classes, num_classes=k)
    assert torch.equal(mask, torch.isin(label_l, torch.tensor(classes)))
    assert torch.equal(image, torch.where(mask, image_l, image_u))
    target = torch.where(mask, _onehot(label_l, k), pseudo) if soft else torch.where(mask, label_l, label_u)
    assert torch.equal(label, target)
    # ClassMix with the same arguments gives the same result (one shared implementation)
    for a, b in zip(class_mix(image_u, pseudo, image_l, label_l, classes), (image, label, mask)):
        assert torch.equal(a, b)


def test_numpy_generator_free_of_global_state():
    # the functional mix is deterministic: no randomness at all
    args = _batch()
    torch.manual_seed(0)
    first = supervised_class_mix(*args, [1])
    np.random.seed(3)
    torch.manual_seed(123)
    second = supervised_class_mix(*args, [1])
    assert all(torch.equal(a, b) for a, b in zip(first, second))
