"""Mixing strategies: ClassMix, SupMix (region, feathering, flips, probability), reverse SupMix, their order."""

from __future__ import annotations

import pytest
import torch

from monai_supmix.engines import (
    ClassMixing,
    MixBatch,
    ReverseSupervisedMixing,
    SequentialMixing,
    SupervisedMixing,
    build_mixing,
)


def _batch(region: bool = False) -> MixBatch:
    gen = torch.Generator().manual_seed(0)
    images_u = torch.rand(2, 1, 16, 16, generator=gen)
    pseudo = torch.zeros(2, 1, 16, 16, dtype=torch.long)
    pseudo[0, 0, :4] = 1  # image 0 has a pseudo-labelled foreground band at the top
    confidence = torch.full((2, 1, 16, 16), 0.5)
    images_l = torch.full((2, 1, 16, 16), 5.0)
    labels_l = torch.zeros(2, 1, 16, 16, dtype=torch.long)
    labels_l[:, 0, 8:12, :] = 1  # ground-truth foreground band in the middle
    mask = None
    if region:
        mask = torch.zeros(2, 1, 16, 16)
        mask[..., :8] = 1  # left half only
    return MixBatch(images_u, pseudo, confidence, images_l, labels_l, 2, mask, torch.tensor([100.0, 10.0]))


def test_supmix_pastes_ground_truth_with_full_confidence():
    batch = _batch()
    out = SupervisedMixing("rarest")(batch, torch.Generator().manual_seed(0))
    band = out.pseudo_label[:, 0, 8:12]
    assert bool((band == 1).all()) and bool((out.images[:, 0, 8:12] == 5.0).all())
    assert bool((out.confidence[:, 0, 8:12] == 1.0).all())
    # outside the pasted band nothing changes
    torch.testing.assert_close(out.images[:, :, :8], batch.images[:, :, :8])
    torch.testing.assert_close(out.confidence[:, :, :8], batch.confidence[:, :, :8])


def test_supmix_stays_inside_the_region():
    batch = _batch(region=True)
    out = SupervisedMixing("rarest", within_region=True)(batch, torch.Generator().manual_seed(0))
    assert bool((out.pseudo_label[:, 0, 8:12, :8] == 1).all())
    assert bool((out.pseudo_label[:, 0, 8:12, 8:] == 0).all()), "pasted outside the region"
    torch.testing.assert_close(out.images[..., 8:], batch.images[..., 8:])
    anywhere = SupervisedMixing("rarest", within_region=False)(batch, torch.Generator().manual_seed(0))
    assert bool((anywhere.pseudo_label[:, 0, 8:12] == 1).all())


def test_feathered_paste_keeps_labels_hard_and_fades_the_image():
    batch = _batch()
    out = SupervisedMixing("rarest", feather_sigma=1.0)(batch, torch.Generator().manual_seed(0))
    assert bool((out.images[:, 0, 8:12] == 5.0).all())  # the pasted pixels are the source's
    next_row = out.images[:, 0, 7]  # just outside: a blend of source and destination
    assert bool(((next_row > batch.images[:, 0, 7]) & (next_row < 5.0)).all())
    assert bool((out.pseudo_label[:, 0, 7] == batch.pseudo_label[:, 0, 7]).all())


def test_flipped_source_moves_the_pasted_structure():
    batch = _batch()
    labels = batch.labeled_labels.clone()
    labels[:, 0, 8:12] = 0
    labels[:, 0, 1:3] = 1  # foreground near the top: a vertical flip moves it to the bottom
    batch.labeled_labels = labels
    rows = set()
    for seed in range(8):
        out = SupervisedMixing("rarest", flip_source=True)(batch, torch.Generator().manual_seed(seed))
        rows.update(int(r) for r in torch.nonzero(out.confidence[0, 0, :, 0] == 1.0).flatten())
    assert {1, 2} <= rows and {13, 14} <= rows


@pytest.mark.parametrize("prob", [0.0, 1.0])
def test_supmix_prob_decides_whether_to_paste(prob):
    batch = _batch()
    out = SupervisedMixing("rarest", prob=prob)(batch, torch.Generator().manual_seed(0))
    if prob == 0.0:
        assert torch.equal(out.images, batch.images) and torch.equal(out.confidence, batch.confidence)
    else:
        assert all(int((out.confidence[i] == 1.0).sum()) > 0 for i in range(2))


def test_both_is_classmix_then_supmix():
    """In "both", SupMix comes last: its ground truth wins where ClassMix pasted a pseudo-label."""
    mixing = build_mixing("both")
    assert isinstance(mixing, SequentialMixing)
    assert [type(s) for s in mixing.strategies] == [ClassMixing, SupervisedMixing]
    batch = _batch()
    batch.pseudo_label[1, 0, 8:12] = 0
    batch.pseudo_label[0, 0, 6:12] = 1  # image 0's pseudo foreground overlaps the ground-truth band
    out = mixing(batch, torch.Generator().manual_seed(0))
    assert bool((out.confidence[:, 0, 8:12] == 1.0).all()) and bool((out.pseudo_label[:, 0, 8:12] == 1).all())
    # ClassMix pasted image 0's pseudo-labelled rows 6-7 onto image 1 (with image 0's confidence)
    assert bool((out.pseudo_label[1, 0, 6:8] == 1).all()) and bool((out.confidence[1, 0, 6:8] == 0.5).all())


def test_build_mixing_names():
    assert build_mixing("none") is None
    assert isinstance(build_mixing("classmix"), ClassMixing)
    assert isinstance(build_mixing("supmix"), SupervisedMixing)
    with pytest.raises(ValueError, match="mix must be one of"):
        build_mixing("cutmix")
    with pytest.raises(ValueError, match="prob"):
        SupervisedMixing(prob=1.5)


def test_reverse_supmix_pastes_unlabeled_classes_into_labeled_images():
    """The last half of the batch becomes labeled images carrying the unlabeled image's pseudo-labelled classes."""
    batch = _batch()
    batch.supmix_mask = torch.zeros(2, 1, 16, 16, dtype=torch.bool)
    out = ReverseSupervisedMixing([1], fraction=0.5, flip_source=False)(batch, torch.Generator().manual_seed(0))
    # slot 0 is untouched
    for name in ("images", "pseudo_label", "confidence"):
        torch.testing.assert_close(getattr(out, name)[0], getattr(batch, name)[0])
    # slot 1: image 1 had no pseudo foreground, so nothing is pasted: the labeled image, its ground truth, confidence 1
    assert bool((out.images[1] == 5.0).all()) and torch.equal(out.pseudo_label[1], batch.labeled_labels[1])
    assert bool((out.confidence[1] == 1.0).all()) and bool(out.supmix_mask[1].all()) and not out.classmix_mask[1].any()
    # with a pseudo foreground band at the top of image 1, that band is pasted with the teacher's confidence
    batch.pseudo_label[1, 0, :3] = 1
    out = ReverseSupervisedMixing([1], fraction=0.5, flip_source=False)(batch, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.images[1, :, :3], batch.images[1, :, :3])
    assert bool((out.images[1, :, 3:] == 5.0).all())
    assert bool((out.pseudo_label[1, 0, :3] == 1).all()) and torch.equal(out.pseudo_label[1, :, 3:], batch.labeled_labels[1, :, 3:])
    assert bool((out.confidence[1, 0, :3] == 0.5).all()) and bool((out.confidence[1, 0, 3:] == 1.0).all())
    # SUFD sees only the pasted unlabeled band of that image as unlabeled
    assert not out.supmix_mask[1, 0, :3].any() and bool(out.supmix_mask[1, 0, 3:].all())
    assert bool(out.classmix_mask[1, 0, :3].all())


def test_reverse_supmix_fraction_and_errors():
    batch = _batch()
    assert ReverseSupervisedMixing(fraction=0.0)(batch, torch.Generator()) is batch
    out = ReverseSupervisedMixing([1], fraction=1.0, flip_source=False)(batch, torch.Generator().manual_seed(0))
    assert bool((out.confidence[:, :, 4:] == 1.0).all())  # both slots now hold labeled images
    with pytest.raises(ValueError, match="fraction must be in"):
        ReverseSupervisedMixing(fraction=1.5)
    batch.labeled_images = torch.zeros(2, 1, 8, 8)
    with pytest.raises(ValueError, match="patches must have one shape"):
        ReverseSupervisedMixing()(batch, torch.Generator())


def test_bidirectional_is_both_then_reverse_supmix():
    mixing = build_mixing("bidirectional")
    assert [type(s) for s in mixing.strategies] == [ClassMixing, SupervisedMixing, ReverseSupervisedMixing]
    out = mixing(_batch(), torch.Generator().manual_seed(0))
    assert out.images.shape == (2, 1, 16, 16) and out.supmix_mask is not None and out.classmix_mask is not None
