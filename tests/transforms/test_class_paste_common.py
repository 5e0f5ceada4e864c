"""What ClassMix(d) and SupervisedClassMix(d) share: exact pastes, types, keys, seeds and errors.

Both transforms paste the pixels of chosen classes of a source item into a destination item;
they differ only in the default class policy and the source's role (another unlabeled item with
its pseudo-label, or a labeled item with its ground truth). Their own behaviour is tested in
``test_class_mix.py`` and ``test_supervised_class_mix.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureTyped, RandomizableTransform

from monai_supmix.transforms import (
    ClassMix,
    ClassMixd,
    ClassMixD,
    ClassMixDict,
    SupervisedClassMix,
    SupervisedClassMixd,
    SupervisedClassMixD,
    SupervisedClassMixDict,
)

AFFINE = torch.diag(torch.tensor([0.5, 0.5, 2.0, 1.0], dtype=torch.float64))
PAIRS = pytest.mark.parametrize(
    "array_cls, dict_cls", [(ClassMix, ClassMixd), (SupervisedClassMix, SupervisedClassMixd)], ids=["classmix", "supmix"]
)


def paired_item(seed=0, dims=2, size=8):
    """An unlabeled item (image, pseudo-label) and its partner (labeled_image, labeled_label), numpy, channel-first."""
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


def _args(d, keys=("image", "label", "labeled_image", "labeled_label")):
    return [d[k] for k in keys]


def _check_exact(d, out_image, out_label, mask, classes):
    """The mask is the source's chosen classes; inside it image and label are the source's, outside the destination's."""
    m = np.asarray(mask)
    assert m.dtype == bool and m.shape == (1, *d["image"].shape[1:])
    assert np.array_equal(m, np.isin(d["labeled_label"], classes))
    oi, ol = np.asarray(out_image), np.asarray(out_label)
    mi = np.broadcast_to(m, oi.shape)
    assert np.array_equal(oi[mi], d["labeled_image"][mi]) and np.array_equal(oi[~mi], d["image"][~mi])
    assert np.array_equal(ol[m], d["labeled_label"][m]) and np.array_equal(ol[~m], d["label"][~m])
    assert oi.dtype == d["image"].dtype and ol.dtype == d["label"].dtype


def test_aliases_and_base_classes():
    assert ClassMixD is ClassMixd and ClassMixDict is ClassMixd
    assert SupervisedClassMixD is SupervisedClassMixd and SupervisedClassMixDict is SupervisedClassMixd
    for cls in (ClassMix, SupervisedClassMix):
        assert isinstance(cls([1]), RandomizableTransform)
        assert {b.value for b in cls.backend} == {"torch", "numpy"}
    for cls in (ClassMixd, SupervisedClassMixd):
        assert isinstance(cls(classes=[1]), RandomizableTransform)


@PAIRS
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("kind", ["numpy", "torch", "meta"])
def test_array_types_metadata_and_exactness(array_cls, dict_cls, dims, kind):
    d = paired_item(dims=dims)
    image, label = _convert(kind, d["image"]), _convert(kind, d["label"], "u_label.nii.gz")
    out_image, out_label, mask = array_cls([1, 2])(
        image, label, _convert(kind, d["labeled_image"], "l.nii.gz"), _convert(kind, d["labeled_label"], "l_label.nii.gz")
    )
    assert type(out_image) is type(image) and type(out_label) is type(label)
    assert isinstance(mask, np.ndarray if kind == "numpy" else torch.Tensor)
    if kind == "meta":  # the destination's metadata survive, not the source's
        assert out_image.meta["filename_or_obj"] == "u.nii.gz" and out_label.meta["filename_or_obj"] == "u_label.nii.gz"
        assert torch.equal(out_image.affine, AFFINE) and torch.equal(out_label.affine, AFFINE)
    _check_exact(d, out_image, out_label, mask, [1, 2])


@PAIRS
def test_prob_zero_is_identity(array_cls, dict_cls):
    d = paired_item()
    image, label, mask = array_cls([1], prob=0.0)(*_args(d))
    assert image is d["image"] and label is d["label"]
    assert isinstance(mask, np.ndarray) and mask.dtype == bool and mask.shape == (1, 8, 8) and not mask.any()
    t = torch.as_tensor(d["image"])
    image, _, mask = array_cls([1], prob=0.0)(t, torch.as_tensor(d["label"]), t, torch.as_tensor(d["labeled_label"]))
    assert image is t and isinstance(mask, torch.Tensor) and not mask.any()
    out = dict_cls(classes=[1], prob=0.0, mask_key="m")(dict(d))
    assert not out["m"].any() and out["image"] is d["image"] and out["label"] is d["label"]


@PAIRS
def test_classes_absent_from_the_source_paste_nothing(array_cls, dict_cls):
    d = paired_item()
    d["labeled_label"] = np.zeros_like(d["labeled_label"])
    image, label, mask = array_cls([1, 2])(*_args(d))
    assert not mask.any() and np.array_equal(image, d["image"]) and np.array_equal(label, d["label"])


@PAIRS
@pytest.mark.parametrize("classes", ["random_half", "inverse_frequency", [1]])
def test_set_random_state_determinism(array_cls, dict_cls, classes):
    d = paired_item()
    runs, dict_runs = [], []
    for _ in range(2):
        t = array_cls(classes, prob=0.5, num_classes=3).set_random_state(42)
        runs.append([t(*_args(d))[2] for _ in range(8)])
        td = dict_cls(classes=classes, prob=0.5, num_classes=3, mask_key="m")
        assert td.set_random_state(42) is td
        dict_runs.append([td(dict(d))["m"] for _ in range(8)])
    for a, b in (runs, dict_runs):
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
    applied = [bool(m.any()) for m in runs[0]]
    assert any(applied) and not all(applied)  # prob=0.5 over 8 draws with this seed


@PAIRS
def test_randomize_false_reuses_the_previous_draw(array_cls, dict_cls):
    d = paired_item()
    t = array_cls("random_half").set_random_state(3)
    first = t(*_args(d))[2]
    for _ in range(3):
        assert np.array_equal(first, t(*_args(d), randomize=False)[2])


@PAIRS
@pytest.mark.parametrize("dims", [2, 3])
def test_dictionary_exactness_mask_key_and_compose(array_cls, dict_cls, dims):
    d = paired_item(dims=dims)
    out = dict_cls(classes=[2], mask_key="mix_mask")(dict(d))
    _check_exact(d, out["image"], out["label"], out["mix_mask"], [2])
    assert out["labeled_image"] is d["labeled_image"] and out["labeled_label"] is d["labeled_label"]
    out = dict_cls(classes=[1])(dict(d))
    assert set(out) == set(d)  # no mask key unless asked
    pipeline = Compose([EnsureTyped(keys=list(d)), dict_cls(classes=[1, 2], mask_key="m")])
    pipeline.set_random_state(1)
    out = pipeline(dict(d))
    assert isinstance(out["image"], MetaTensor) and out["m"].shape == (1, *d["image"].shape[1:])
    _check_exact(d, out["image"].as_tensor(), out["label"].as_tensor(), out["m"], [1, 2])


@PAIRS
def test_dictionary_custom_keys_like_monai(array_cls, dict_cls):
    """``keys`` + ``label_key`` (MONAI's form); the earlier ``keys=(image, label)`` warns and does the same."""
    d = paired_item()
    data = {
        "img": _convert("meta", d["image"]),
        "pseudo": _convert("meta", d["label"], "p.nii.gz"),
        "l_img": _convert("meta", d["labeled_image"], "l.nii.gz"),
        "l_seg": _convert("meta", d["labeled_label"], "ls.nii.gz"),
    }
    out = dict_cls(keys="img", label_key="pseudo", labeled_keys=("l_img", "l_seg"), classes=[1], mask_key="m")(dict(data))
    assert isinstance(out["img"], MetaTensor) and out["img"].meta["filename_or_obj"] == "u.nii.gz"
    assert out["pseudo"].meta["filename_or_obj"] == "p.nii.gz" and torch.equal(out["img"].affine, AFFINE)
    _check_exact(d, out["img"], out["pseudo"], out["m"], [1])
    with pytest.warns(FutureWarning, match="label_key='pseudo'"):
        legacy = dict_cls(keys=("img", "pseudo"), labeled_keys=("l_img", "l_seg"), classes=[1], mask_key="m")
    assert legacy.keys == ("img",) and legacy.label_key == "pseudo"
    assert torch.equal(legacy(dict(data))["pseudo"], out["pseudo"])


@PAIRS
def test_errors(array_cls, dict_cls):
    d = paired_item()
    name = dict_cls.__name__
    with pytest.raises(KeyError, match=rf"{name}: missing key\(s\) \['labeled_label'\]"):
        dict_cls(classes=[1])({k: v for k, v in d.items() if k != "labeled_label"})
    with pytest.raises(KeyError, match=r"missing key\(s\) \['label'\]"):
        dict_cls(classes=[1])({k: v for k, v in d.items() if k != "label"})
    partial = {k: v for k, v in d.items() if k != "labeled_image"}
    assert dict_cls(classes=[1], allow_missing_keys=True)(partial) == partial
    with pytest.raises(ValueError, match="keys must name one image key"):
        dict_cls(keys=("a", "b", "c"), classes=[1])
    with pytest.raises(ValueError, match="keys must name one image key"):
        dict_cls(keys=("a", "b"), label_key="c", classes=[1])
    with pytest.raises(ValueError, match="labeled_keys must name the partner's"):
        dict_cls(labeled_keys=("only_image",), classes=[1])
    for make in (array_cls, lambda classes: dict_cls(classes=classes)):
        with pytest.raises(ValueError, match="classes must not be empty"):
            make([])
        with pytest.raises(ValueError, match=r"one of \('random_half', 'rarest', 'inverse_frequency'\)"):
            make("half")
    with pytest.raises(TypeError, match="must be a numpy array or a tensor"):
        array_cls([1])([1, 2], d["label"], d["labeled_image"], d["labeled_label"])
    with pytest.raises(TypeError, match="must be a numpy array or a tensor"):
        dict_cls(classes=[1])({**d, "labeled_label": "seg.png"})
    with pytest.raises(ValueError, match="expected integer class indices"):
        array_cls([1])(d["image"], d["label"], d["labeled_image"], d["labeled_label"].astype(np.float32))
    with pytest.raises(ValueError, match=r"\(1, 3, 8, 8\) and `image_[lb]` \(1, 3, 4, 4\)"):
        array_cls([1])(d["image"], d["label"], d["labeled_image"][:, :4, :4], d["labeled_label"][:, :4, :4])
    with pytest.raises(ValueError, match=r"indices \[3\] outside"):
        array_cls([3], num_classes=3)(*_args(d))
