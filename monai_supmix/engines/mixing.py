"""Mixing strategies of the semi-supervised trainer: ClassMix, SupMix, and both in sequence.

A strategy is a small callable over a :class:`MixBatch` (the unlabeled images with their
pseudo-labels and confidence, the labeled batch, and optional anatomy masks) that returns
the mixed batch. The trainer calls ``mixing(batch, generator)`` once per iteration; the
pixel work is done by the batched functions of :mod:`monai_supmix.transforms.functional`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from monai_supmix.transforms.functional import _to_index, class_mix, random_flips, select_classes, supervised_class_mix

__all__ = [
    "MixBatch", "ClassMixing", "SupervisedMixing", "ReverseSupervisedMixing", "SequentialMixing", "build_mixing",
    "MIX_MODES",
]

MIX_MODES = ("none", "classmix", "supmix", "both", "bidirectional")


@dataclass
class MixBatch:
    """What a mixing strategy reads and returns (all ``B×C×spatial`` tensors on the training device).

    Attributes:
        images: unlabeled images (already mixed by earlier strategies).
        pseudo_label: their ``B×1×spatial`` class index maps (teacher's argmax).
        confidence: ``B×1×spatial`` confidence of the pseudo-label in [0, 1]; pasted ground truth gets 1.
        labeled_images: the labeled batch (SupMix's source).
        labeled_labels: its ground truth (index map or one-hot).
        region: optional ``B×1×spatial`` anatomy mask of the unlabeled images (field of view,
            lungs): 1 where pasted content can sit.
        class_frequencies: pixel counts per class of the labeled set (rarity policies).
        num_classes: number of classes.
        classmix_mask: ``B×1×spatial`` bool map of the pixels ClassMix pasted from another
            unlabeled image (``None`` before ClassMix).
        supmix_mask: ``B×1×spatial`` bool map of the ground-truth pixels SupMix pasted from a
            labeled image (``None`` before SupMix). SUFD's ``"mixed_masked"`` input keeps its
            discriminator away from both (:meth:`~monai_supmix.engines.SUFD.unlabeled_weight`).
    """

    images: torch.Tensor
    pseudo_label: torch.Tensor
    confidence: torch.Tensor
    labeled_images: torch.Tensor
    labeled_labels: torch.Tensor
    num_classes: int
    region: torch.Tensor | None = None
    class_frequencies: torch.Tensor | None = None
    classmix_mask: torch.Tensor | None = None
    supmix_mask: torch.Tensor | None = None


class ClassMixing:
    """Conventional ClassMix between the unlabeled images of a batch (image ``b`` gets classes of image ``b-1``).

    Args:
        classes: class policy of :func:`~monai_supmix.transforms.select_classes` (default
            ClassMix's ``"random_half"``) or a list of class indices.
    """

    def __init__(self, classes: Sequence[int] | str = "random_half") -> None:
        self.classes = classes

    def __call__(self, batch: MixBatch, generator: torch.Generator) -> MixBatch:
        n = batch.images.shape[0]
        if n < 2:
            return batch
        perm = torch.roll(torch.arange(n, device=batch.images.device), shifts=1)
        classes = select_classes(
            self.classes, batch.pseudo_label[perm], batch.num_classes, generator=generator,
            class_frequencies=batch.class_frequencies,
        )
        images, pseudo, mask = class_mix(
            batch.images, batch.pseudo_label, batch.images[perm], batch.pseudo_label[perm], classes
        )
        confidence = torch.where(mask, batch.confidence[perm], batch.confidence)
        return replace(batch, images=images, pseudo_label=pseudo, confidence=confidence,
                       classmix_mask=_union(batch.classmix_mask, mask))


class SupervisedMixing:
    """Supervised ClassMix (SupMix): paste ground-truth classes of labeled images onto the unlabeled ones.

    Pasted pixels take their ground-truth class in the pseudo-label and confidence 1, so
    they always count in the unsupervised loss.

    Args:
        classes: class policy (``"rarest"``: every class but the most frequent;
            ``"inverse_frequency"``; ``"random_half"``) or a list of class indices (the
            paper's manual choice).
        num_select: how many classes ``"rarest"`` picks (default: all but the most frequent).
        prob: probability that an unlabeled image of the batch receives a paste (per image).
        within_region: paste only where the destination's anatomy mask (``MixBatch.region``,
            e.g. the field of view or the lungs) is 1; ignored when the batch has no mask.
        feather_sigma: soften the paste edges: the pasted image content fades out over a
            Gaussian of this width (pixels) around the pasted region; labels stay hard.
        flip_source: flip each labeled source image (and its label) at random along every
            spatial axis before pasting, so the pasted structures are not where the
            supervised batch already shows them.
    """

    def __init__(
        self,
        classes: Sequence[int] | str = "rarest",
        num_select: int | None = None,
        prob: float = 1.0,
        within_region: bool = True,
        feather_sigma: float = 0.0,
        flip_source: bool = False,
    ) -> None:
        if not 0.0 <= float(prob) <= 1.0:
            raise ValueError(f"SupMix prob must be in [0, 1], got {prob!r}.")
        if float(feather_sigma) < 0:
            raise ValueError(f"feather_sigma must be >= 0, got {feather_sigma!r}.")
        self.classes = classes
        self.num_select = num_select
        self.prob = float(prob)
        self.within_region = bool(within_region)
        self.feather_sigma = float(feather_sigma)
        self.flip_source = bool(flip_source)

    def __call__(self, batch: MixBatch, generator: torch.Generator) -> MixBatch:
        n = batch.images.shape[0]
        pick = torch.randint(batch.labeled_images.shape[0], (n,), generator=generator).to(batch.images.device)
        source_images, source_labels = batch.labeled_images[pick], batch.labeled_labels[pick]
        if self.flip_source:
            source_images, source_labels = random_flips(source_images, source_labels, generator)
        classes = select_classes(
            self.classes, source_labels, batch.num_classes, generator=generator,
            class_frequencies=batch.class_frequencies, num_select=self.num_select,
        )
        if self.prob < 1.0:
            draws = torch.rand(n, generator=generator).tolist()
            classes = [c if draw < self.prob else [] for c, draw in zip(classes, draws)]
        images, pseudo, mask = supervised_class_mix(
            batch.images, batch.pseudo_label, source_images.to(batch.images.dtype), source_labels, classes,
            region=batch.region if self.within_region else None, feather_sigma=self.feather_sigma,
        )
        confidence = torch.where(mask, torch.ones_like(batch.confidence), batch.confidence)
        return replace(batch, images=images, pseudo_label=pseudo, confidence=confidence,
                       supmix_mask=_union(batch.supmix_mask, mask))


class ReverseSupervisedMixing:
    """SupMix's other direction: paste the teacher's classes of unlabeled images into labeled images.

    BCP's bidirectional copy-paste (Bai et al., CVPR 2023) for our mixing: the last
    ``fraction`` of the mixed batch is replaced by labeled images (a random one of the batch,
    flipped at random) that receive the pseudo-labeled classes of the unlabeled image in that
    slot. Their targets are the ground truth (confidence 1) with the teacher's pseudo-label
    and confidence where unlabeled content was pasted, so the pseudo-label loss trains them
    with no extra pass: the student sees labeled and unlabeled content side by side in both
    directions. For SUFD only the pasted unlabeled content of those images counts as
    unlabeled (everything else is marked as pasted ground truth in ``supmix_mask``).

    Args:
        classes: class policy over the unlabeled source's pseudo-label (default ClassMix's
            ``"random_half"``) or a list of class indices.
        fraction: share of the mixed batch replaced (at least one image when > 0).
        flip_source: flip the labeled destination (and its ground truth) at random first.

    Raises:
        ValueError: for ``fraction`` outside [0, 1]; when called on labeled and unlabeled
            patches of different shapes.
    """

    def __init__(self, classes: Sequence[int] | str = "random_half", fraction: float = 0.5, flip_source: bool = True) -> None:
        if not 0.0 <= float(fraction) <= 1.0:
            raise ValueError(f"reverse SupMix fraction must be in [0, 1], got {fraction!r}.")
        self.classes = classes
        self.fraction = float(fraction)
        self.flip_source = bool(flip_source)

    def __call__(self, batch: MixBatch, generator: torch.Generator) -> MixBatch:
        n = batch.images.shape[0]
        k = min(n, max(1, round(self.fraction * n))) if self.fraction > 0 else 0
        if k == 0:
            return batch
        if batch.labeled_images.shape[1:] != batch.images.shape[1:]:
            raise ValueError(
                f"reverse SupMix pastes unlabeled content into labeled images: their patches must have one shape, got "
                f"labeled {tuple(batch.labeled_images.shape[1:])} and unlabeled {tuple(batch.images.shape[1:])}."
            )
        slots = torch.arange(n - k, n, device=batch.images.device)
        pick = torch.randint(batch.labeled_images.shape[0], (k,), generator=generator).to(batch.images.device)
        dest_images, dest_labels = batch.labeled_images[pick], batch.labeled_labels[pick]
        if self.flip_source:
            dest_images, dest_labels = random_flips(dest_images, dest_labels, generator)
        dest_index = _to_index("labeled_labels", dest_labels)
        source_pseudo = batch.pseudo_label[slots]
        classes = select_classes(self.classes, source_pseudo, batch.num_classes, generator=generator,
                                 class_frequencies=batch.class_frequencies)
        images, pseudo, mask = class_mix(dest_images.to(batch.images.dtype), dest_index.to(source_pseudo.dtype),
                                         batch.images[slots], source_pseudo, classes)
        confidence = torch.where(mask, batch.confidence[slots], torch.ones_like(batch.confidence[slots]))

        def put(full: torch.Tensor | None, part: torch.Tensor) -> torch.Tensor:
            out = (torch.zeros_like(part[:1]).expand(n, *part.shape[1:]).clone() if full is None else full.clone())
            out[slots] = part
            return out

        ground_truth = ~mask  # labeled content: SUFD leaves it out of the unlabeled side
        supmix = put(batch.supmix_mask, ground_truth)
        # the slot's earlier ClassMix paste is gone with the unlabeled destination; the new paste edge counts
        classmix = put(batch.classmix_mask, mask)
        return replace(batch, images=put(batch.images, images), pseudo_label=put(batch.pseudo_label, pseudo),
                       confidence=put(batch.confidence, confidence), supmix_mask=supmix, classmix_mask=classmix)


class SequentialMixing:
    """Apply mixing strategies one after the other (``"both"``: ClassMix, then SupMix)."""

    def __init__(self, strategies: Sequence) -> None:
        self.strategies = list(strategies)

    def __call__(self, batch: MixBatch, generator: torch.Generator) -> MixBatch:
        for strategy in self.strategies:
            batch = strategy(batch, generator)
        return batch


def _union(previous: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor:
    """The pasted pixels of this strategy and of an earlier one of the same kind."""
    mask = mask.bool()
    return mask if previous is None else previous | mask


def build_mixing(
    mix: str,
    supmix_classes: Sequence[int] | str = "rarest",
    supmix_num_select: int | None = None,
    supmix_prob: float = 1.0,
    supmix_within_region: bool = True,
    supmix_feather_sigma: float = 0.0,
    supmix_flip_source: bool = False,
    classmix_classes: Sequence[int] | str = "random_half",
):
    """The mixing strategy of a bundle's ``mix`` key: ``"none"`` (None), ``"classmix"``, ``"supmix"``, ``"both"``
    or ``"bidirectional"`` (``"both"``, then :class:`ReverseSupervisedMixing` on half of the batch).

    Raises:
        ValueError: for an unknown ``mix``.
    """
    if mix not in MIX_MODES:
        raise ValueError(f"mix must be one of {MIX_MODES}, got {mix!r}.")
    classmix = ClassMixing(classmix_classes)
    supmix = SupervisedMixing(
        supmix_classes, supmix_num_select, supmix_prob, supmix_within_region, supmix_feather_sigma, supmix_flip_source
    )
    if mix == "bidirectional":  # ClassMix, SupMix, then half of the batch in SupMix's other direction
        return SequentialMixing([classmix, supmix, ReverseSupervisedMixing(classmix_classes, 0.5, supmix_flip_source)])
    return {"none": None, "classmix": classmix, "supmix": supmix, "both": SequentialMixing([classmix, supmix])}[mix]
