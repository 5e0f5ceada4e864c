"""Dictionary transforms for SupMix and ClassMix, for ``Compose`` pipelines.

A sample pairs an unlabeled (destination) item and its partner (source) in one
dictionary, e.g. built with :class:`monai.data.ZipDataset` or by a pairing dataset:
``{"image", "label" (pseudo-label), "labeled_image", "labeled_label"}``. As in MONAI's own
dictionary transforms, ``keys`` names the image and ``label_key`` the label.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform

from .array import ClassMix, SupervisedClassMix

__all__ = [
    "SupervisedClassMixd",
    "SupervisedClassMixD",
    "SupervisedClassMixDict",
    "ClassMixd",
    "ClassMixD",
    "ClassMixDict",
]


class _ClassPasted(RandomizableTransform, MapTransform):
    """Shared logic of :class:`SupervisedClassMixd` and :class:`ClassMixd`.

    The dictionary transform draws ``prob`` with its own random state, then delegates the
    class draw and the paste to its array transform (``self.mixer``).
    """

    backend = SupervisedClassMix.backend
    array_class: type = SupervisedClassMix

    def __init__(
        self,
        keys: KeysCollection = "image",
        label_key: str | None = None,
        labeled_keys: Sequence[str] = ("labeled_image", "labeled_label"),
        classes: Sequence[int] | str | None = None,
        prob: float = 1.0,
        num_classes: int | None = None,
        class_frequencies: Sequence[float] | None = None,
        num_select: int | None = None,
        mask_key: str | None = None,
        allow_missing_keys: bool = False,
        region_key: str | None = None,
        feather_sigma: float = 0.0,
        flip_source: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        if label_key is None and len(self.keys) == 2:
            # the 0.2 form ``keys=(image, label)``: still accepted, MONAI's form is keys + label_key
            warnings.warn(
                f"{type(self).__name__}(keys=(image, label)) is deprecated: give keys={self.keys[0]!r}, "
                f"label_key={self.keys[1]!r} as MONAI's dictionary transforms do.", FutureWarning, stacklevel=2,
            )
            self.keys, label_key = (self.keys[0],), self.keys[1]
        if len(self.keys) != 1:
            raise ValueError(f"keys must name one image key (the label goes in label_key), got keys={self.keys}.")
        if len(labeled_keys) != 2:
            raise ValueError(f"labeled_keys must name the partner's (image, label), got {tuple(labeled_keys)}.")
        self.label_key = "label" if label_key is None else label_key
        self.labeled_keys = tuple(labeled_keys)
        self.mask_key = mask_key
        self.region_key = region_key
        self.mixer = self.array_class(
            classes=classes, prob=1.0, num_classes=num_classes, class_frequencies=class_frequencies, num_select=num_select,
            feather_sigma=feather_sigma, flip_source=flip_source,
        )

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> _ClassPasted:
        """Seed this transform and its array transform (the class draws) for reproducibility."""
        super().set_random_state(seed, state)
        self.mixer.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        """Mix the partner item into the destination item of ``data``.

        Args:
            data: a mapping holding ``keys`` and ``label_key`` (destination image and label) and
                ``labeled_keys`` (source image and label), channel-first numpy arrays or tensors.

        Returns:
            a shallow copy of ``data`` with the mixed image and label under ``keys`` and ``label_key`` and, when
            ``mask_key`` is set, the ``1×spatial`` bool paste mask.

        Raises:
            KeyError: when a key is missing and ``allow_missing_keys`` is False (naming it).
            TypeError, ValueError: see the array transform.
        """
        d = dict(data)
        image_key, label_key = self.keys[0], self.label_key
        needed = [image_key, label_key, *self.labeled_keys]
        missing = [k for k in needed if k not in d]
        if missing:
            if self.allow_missing_keys:
                return d
            raise KeyError(f"{type(self).__name__}: missing key(s) {missing}; the sample has keys {sorted(map(str, d))}.")
        self.randomize(None)
        src_image_key, src_label_key = self.labeled_keys
        if not self._do_transform:
            if self.mask_key is not None:
                d[self.mask_key] = self._empty_mask(d[image_key])
            return d
        if self.region_key is not None and self.region_key in d:
            d[image_key], d[label_key], mask = self.mixer(d[image_key], d[label_key], d[src_image_key], d[src_label_key],
                                                          region=d[self.region_key])
        else:
            d[image_key], d[label_key], mask = self.mixer(d[image_key], d[label_key], d[src_image_key], d[src_label_key])
        if self.mask_key is not None:
            d[self.mask_key] = mask
        return d

    @staticmethod
    def _empty_mask(image):
        shape = (1, *image.shape[1:])
        return np.zeros(shape, dtype=bool) if isinstance(image, np.ndarray) else torch.zeros(shape, dtype=torch.bool)


class SupervisedClassMixd(_ClassPasted):
    """Dictionary form of :class:`~monai_supmix.transforms.SupervisedClassMix`.

    Args:
        keys: the unlabeled item's image key (a one-key collection). The earlier form
            ``keys=(image, label)`` still works, with a ``FutureWarning``.
        label_key: the unlabeled item's label key (its pseudo-label); default ``"label"``.
        labeled_keys: ``(image, label)`` keys of its labeled partner in the same dict.
        classes, prob, num_classes, class_frequencies, num_select: see :class:`SupervisedClassMix`.
        mask_key: if given, the paste mask (``1×spatial`` bool) is stored under this key.
        allow_missing_keys: return the sample unchanged when a key is missing instead of raising.
        region_key: key of the unlabeled item's anatomy mask (field of view, lungs): SupMix pastes
            only inside it (ignored when the sample lacks it).
        feather_sigma, flip_source: see :class:`SupervisedClassMix` (the bundles: 1.0 and True).

    Raises:
        KeyError: when a key is missing (naming it).
        ValueError: for more than one image key, or ``labeled_keys`` that are not a pair.

    Example::

        pipeline = Compose([..., SupervisedClassMixd(classes=[1, 2], prob=0.5, mask_key="mix_mask")])
    """

    array_class = SupervisedClassMix


class ClassMixd(_ClassPasted):
    """Dictionary form of :class:`~monai_supmix.transforms.ClassMix` (partner keys ``labeled_keys``).

    Default policy ``"random_half"``; see :class:`SupervisedClassMixd` for the arguments.
    """

    array_class = ClassMix


SupervisedClassMixD = SupervisedClassMixDict = SupervisedClassMixd
ClassMixD = ClassMixDict = ClassMixd
