"""Array transforms for SupMix and ClassMix on single channel-first items.

They wrap :mod:`.functional` (one implementation): the item gets a batch dimension,
the batched function mixes it, the batch dimension is removed and the output is
converted back to the input's type (numpy, torch or ``MetaTensor`` with its metadata).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms import RandomizableTransform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

from .functional import CLASS_POLICIES, class_mix, random_flips, select_classes, supervised_class_mix

__all__ = ["SupervisedClassMix", "ClassMix"]


class _ClassPaste(RandomizableTransform):
    """Shared logic of :class:`SupervisedClassMix` and :class:`ClassMix`.

    Args:
        classes: class indices to paste or a policy of :data:`~.functional.CLASS_POLICIES`
            (``None``: the subclass default).
        prob: probability of mixing.
        num_classes: number of classes (inferred from the source label when ``None``).
        class_frequencies: per-class pixel counts for ``"rarest"`` / ``"inverse_frequency"``.
        num_select: number of classes picked by ``"rarest"``.
        feather_sigma: SupMix only: soften the paste edges of the image content (labels stay hard).
        flip_source: SupMix only: flip the source along each spatial axis with probability 1/2 first.

    Raises:
        ValueError: for an empty class list, an unknown policy name or a negative ``feather_sigma``.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]
    _function = staticmethod(supervised_class_mix)
    _default_classes: Sequence[int] | str = "rarest"

    def __init__(
        self,
        classes: Sequence[int] | str | None = None,
        prob: float = 1.0,
        num_classes: int | None = None,
        class_frequencies: Sequence[float] | None = None,
        num_select: int | None = None,
        feather_sigma: float = 0.0,
        flip_source: bool = False,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        if float(feather_sigma) < 0:
            raise ValueError(f"feather_sigma must be >= 0, got {feather_sigma!r}.")
        self.feather_sigma = float(feather_sigma)
        self.flip_source = bool(flip_source)
        classes = self._default_classes if classes is None else classes
        if isinstance(classes, str):
            if classes not in CLASS_POLICIES:
                raise ValueError(f"classes must be a list of class indices or one of {CLASS_POLICIES}, got {classes!r}.")
        else:
            classes = [int(c) for c in classes]
            if not classes:
                raise ValueError("classes must not be empty: give at least one class index to paste.")
        self.classes = classes
        self.num_classes = num_classes
        self.class_frequencies = class_frequencies
        self.num_select = num_select
        self._chosen: list[int] | None = None

    def randomize(self, source_label: torch.Tensor | None = None) -> None:  # type: ignore[override]
        """Decide whether to apply (``prob``) and draw the classes for ``source_label``."""
        super().randomize(None)
        self._chosen = None
        if not self._do_transform or source_label is None:
            return
        labels = source_label[None]
        self._chosen = select_classes(
            self.classes,
            labels,
            self._resolve_num_classes(labels),
            generator=self.R,
            class_frequencies=self.class_frequencies,
            num_select=self.num_select,
        )[0]

    def _resolve_num_classes(self, labels: torch.Tensor) -> int:
        """``num_classes`` if given, else the length of ``class_frequencies``, the channels of a soft
        label, or one more than the largest index among the label and the requested classes."""
        if self.num_classes is not None:
            return int(self.num_classes)
        if self.class_frequencies is not None:
            return len(self.class_frequencies)
        if labels.shape[1] > 1:
            return int(labels.shape[1])
        if labels.is_floating_point():
            raise ValueError(
                f"the source label (`label_l` / `label_b`) is a 1-channel label of dtype {labels.dtype}: expected integer class indices "
                "(or C=num_classes one-hot/probabilities)."
            )
        largest = int(labels.max()) if labels.numel() else 0
        if not isinstance(self.classes, str):
            largest = max(largest, *self.classes)
        return max(largest + 1, 2)

    def __call__(  # type: ignore[override]
        self,
        image: NdarrayOrTensor,
        label: NdarrayOrTensor,
        source_image: NdarrayOrTensor,
        source_label: NdarrayOrTensor,
        randomize: bool = True,
        region: NdarrayOrTensor | None = None,
    ) -> tuple[NdarrayOrTensor, NdarrayOrTensor, NdarrayOrTensor]:
        """Mix one item.

        Args:
            image: destination image ``C×spatial`` (2-D or 3-D spatial).
            label: its (pseudo-)label, ``1×spatial`` integer indices or ``K×spatial`` soft.
            source_image: source image, same shape as ``image``.
            source_label: source label (ground truth for SupMix), indices or one-hot.
            randomize: draw ``prob`` and the classes anew; ``False`` reuses the last draw.
            region: SupMix only: ``1×spatial`` anatomy mask of the destination (field of view,
                lungs); pasted content stays where it is non-zero.

        Returns:
            ``(image, label, mask)``: image and label of the destination's type (numpy,
            torch or ``MetaTensor`` with the destination's metadata) and the ``1×spatial``
            bool paste mask (numpy for numpy inputs, else a tensor).

        Raises:
            TypeError: for inputs that are neither numpy arrays nor tensors.
            ValueError: for mismatched shapes or bad labels (see :mod:`.functional`).
        """
        for name, value in (("image", image), ("label", label), ("source image", source_image), ("source label", source_label)):
            if not isinstance(value, (np.ndarray, torch.Tensor)):
                raise TypeError(f"{type(self).__name__}: {name} must be a numpy array or a tensor, got {type(value).__name__}.")
        img_t = convert_to_tensor(image, track_meta=False)
        lab_t = convert_to_tensor(label, track_meta=False)
        src_img = convert_to_tensor(source_image, track_meta=False, device=img_t.device)
        src_lab = convert_to_tensor(source_label, track_meta=False, device=lab_t.device)
        if randomize:
            self.randomize(src_lab)
            self._flip_draw = None
            if self._do_transform and self.flip_source:
                self._flip_draw = self.R.randint(2**31)
        if self._do_transform and self.flip_source and getattr(self, "_flip_draw", None) is not None:
            flipped = random_flips(src_img[None], src_lab[None], np.random.RandomState(self._flip_draw))
            src_img, src_lab = flipped[0][0], flipped[1][0]
        if not self._do_transform or not self._chosen:
            mask = torch.zeros((1, *img_t.shape[1:]), dtype=torch.bool, device=img_t.device)
            return image, label, convert_to_dst_type(mask, image, dtype=bool)[0] if isinstance(image, np.ndarray) else mask
        out_img, out_lab, mask = self._paste(img_t, lab_t, src_img, src_lab, region)
        out_img = convert_to_dst_type(out_img[0], image)[0]
        out_lab = convert_to_dst_type(out_lab[0], label, dtype=label.dtype)[0]
        mask = mask[0] if not isinstance(image, np.ndarray) else mask[0].cpu().numpy()
        return out_img, out_lab, mask


    def _paste(self, image, label, source_image, source_label, region):
        return self._function(image[None], label[None], source_image[None], source_label[None], [self._chosen],
                              num_classes=self.num_classes)


class SupervisedClassMix(_ClassPaste):
    """Supervised ClassMix (SupMix) on one item.

    Pastes the pixels of the chosen classes of a labeled image (its ground truth decides
    which pixels) onto an unlabeled image, and the same ground-truth classes onto the
    unlabeled image's pseudo-label. Channel-first inputs, 2-D or 3-D; numpy, torch or
    ``MetaTensor`` (the unlabeled item's metadata is kept).

    Args:
        classes: class indices to paste (the paper's manual choice, e.g. ``[1]`` for
            vessels or ``[1, 2]`` for GGO and consolidation), or a policy:
            ``"rarest"`` (default: all classes but the most frequent),
            ``"inverse_frequency"`` or ``"random_half"``.
        prob: probability of mixing; otherwise the inputs are returned unchanged.
        num_classes: number of classes (validates indices; inferred when ``None``).
        class_frequencies: pixel counts per class of the labeled set, for the rarity
            policies (the source label's own counts when ``None``).
        num_select: number of classes picked by ``"rarest"``.
        feather_sigma: soften the pasted image content's edges over a Gaussian of this width
            (pixels); labels stay hard (the bundles use 1.0).
        flip_source: flip the labeled source (image and label) along each spatial axis with
            probability 1/2 before pasting (the bundles use True).

    This is the same code the trainer's :class:`~monai_supmix.engines.SupervisedMixing` runs
    (:func:`~monai_supmix.transforms.supervised_class_mix` and
    :func:`~monai_supmix.transforms.functional.random_flips`), so with the bundles' settings
    (``feather_sigma=1.0, flip_source=True``, a region) it is the measured method.

    Example::

        mix = SupervisedClassMix(classes=[1], prob=0.5, feather_sigma=1.0, flip_source=True)
        mix.set_random_state(0)
        image, pseudo_label, mask = mix(image_u, pseudo_u, image_l, label_l)
    """

    def __call__(self, image, label, image_l, label_l, randomize: bool = True, region=None):  # type: ignore[override]
        """Mix ``(image_l, label_l)`` (labeled, ground truth) into ``(image, label)`` (unlabeled, pseudo-label).

        ``region``: optional ``1×spatial`` anatomy mask of the unlabeled image; SupMix pastes only inside it.
        """
        return super().__call__(image, label, image_l, label_l, randomize, region)

    def _paste(self, image, label, source_image, source_label, region):
        region_t = None if region is None else convert_to_tensor(region, track_meta=False, device=image.device)[None]
        return supervised_class_mix(image[None], label[None], source_image[None], source_label[None], [self._chosen],
                                    num_classes=self.num_classes, region=region_t, feather_sigma=self.feather_sigma)


class ClassMix(_ClassPaste):
    """Conventional ClassMix on one item: paste classes of image ``b`` (by its pseudo-label) onto image ``a``.

    Same arguments as :class:`SupervisedClassMix`; the default policy is ClassMix's
    ``"random_half"`` (a random half of the classes present in ``label_b``).
    """

    _function = staticmethod(class_mix)
    _default_classes = "random_half"

    def __call__(self, image, label, image_b, label_b, randomize: bool = True, region=None):  # type: ignore[override]
        """Mix ``(image_b, label_b)`` into ``(image, label)`` (``region`` is accepted and ignored: ClassMix pastes anywhere)."""
        return super().__call__(image, label, image_b, label_b, randomize)
