"""Preprocessing chains for CHASE_DB1 and COVID-19 CT, shared by training, evaluation and inference.

Orientation convention: 2-D files are read with MONAI's ``PILReader(reverse_indexing=False)``
so that arrays keep the file's row-major layout: images are ``(C, H, W)`` and masks
``(1, H, W)`` where ``H`` is the number of pixel rows (what ``PIL.Image.size`` reports as
height). MONAI's default (``reverse_indexing=True``) would give ``(C, W, H)``; using the same
reader for images, labels and FOV masks, PNG and JPEG alike, keeps them aligned either
way, and ``(C, H, W)`` also matches :func:`monai_supmix.data.io.save_label`. (The
``spatial_shape`` metadata that PILReader records stays in PIL's ``(W, H)`` order.)

Errors: MONAI's ``Compose`` re-raises an error of a transform as
``RuntimeError("applying transform ...")``; the ``ValueError``/``FileNotFoundError`` of
these transforms, naming the file, is its ``__cause__`` (shown first in the traceback).
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor, PILReader
from monai.transforms import (
    CastToTyped,
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImage,
    MapTransform,
    RandAdjustContrastd,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandGaussianNoised,
    RandRotate90d,
    RandScaleIntensityd,
    RandSpatialCropd,
    RandSpatialCropSamplesd,
    Resized,
    ScaleIntensityRanged,
    ScaleIntensityRangePercentilesd,
    SpatialPadd,
    Zoomd,
)

__all__ = [
    "MODES",
    "ReadImaged",
    "BinarizeMaskd",
    "DefaultMaskd",
    "ValidateLabeld",
    "ToGrayscaled",
    "LungRegiond",
    "EnsureChannelsd",
    "chase_transforms",
    "covid_transforms",
]

MODES = ("train", "unlabeled", "eval", "infer")


def _show(values: list) -> list:
    """Values for messages: integral floats as ints (``7`` rather than ``7.0``), at most 10."""
    return [int(v) if float(v).is_integer() else v for v in values[:10]]


def _source(data: Mapping, key: Hashable) -> str:
    """The file a value was loaded from (``MetaTensor.meta["filename_or_obj"]``), else the key."""
    value = data.get(key)
    if isinstance(value, MetaTensor):
        return str(value.meta.get("filename_or_obj", key))
    return str(key)


class ReadImaged(MapTransform):
    """Load 2-D image files (PNG/JPEG/BMP/TIFF) with MONAI's ``PILReader`` in ``(H, W[, C])`` order.

    A thin wrapper of ``LoadImage`` that turns reader failures (truncated or corrupt
    files, wrong formats) into errors naming the key and the file.

    Args:
        keys: keys of the file paths.
        allow_missing_keys: skip absent keys (e.g. an item without ``fov``).

    Raises:
        FileNotFoundError: when a file does not exist.
        ValueError: when a file cannot be decoded as an image.
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = True) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadImage(reader=PILReader(reverse_indexing=False), image_only=True)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            path = d[key]
            if isinstance(path, torch.Tensor):
                continue  # already loaded
            if not os.path.isfile(str(path)):
                raise FileNotFoundError(f"{key} file {str(path)!r} does not exist.")
            try:
                d[key] = self.loader(str(path))
            except Exception as e:
                raise ValueError(
                    f"cannot read {key} file {str(path)!r}: expected a readable 2-D image (png/jpg/bmp/tif), "
                    f"the reader failed with {type(e).__name__}: {e}"
                ) from e
        return d


class BinarizeMaskd(MapTransform):
    """Turn binary masks stored as 0/1 or 0/255 (or PIL ``"1"`` images) into {0, 1}.

    Anything else (e.g. grey levels from a JPEG-compressed mask) is refused instead of
    being silently thresholded.

    Args:
        keys: mask keys.
        allow_missing_keys: skip absent keys.

    Raises:
        ValueError: naming the file, when a mask holds values other than {0, 1} or {0, 255}.
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = True) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            mask = d[key]
            values = set(torch.unique(torch.as_tensor(mask)).tolist())
            if values <= {0, 1}:
                continue
            if values <= {0, 255}:
                d[key] = mask / 255
                continue
            shown = _show(sorted(values))
            raise ValueError(f"{key} mask {_source(d, key)} must be binary (0/1 or 0/255), found values {shown}.")
        return d


class ValidateLabeld(MapTransform):
    """Check that labels are single-channel class indices in ``[0, num_classes)`` with the image's size.

    Raises ``ValueError`` naming the label file (from the ``MetaTensor`` metadata) and
    what was found, instead of letting a bad file surface as a cryptic loss error.

    Args:
        keys: label (or mask) keys.
        num_classes: number of classes.
        image_key: key of the image whose spatial shape the labels must match.
        allow_missing_keys: skip absent keys.

    Raises:
        ValueError: for values outside the class range, several channels, or a spatial
            size different from the image's (naming both files).
    """

    def __init__(
        self, keys: KeysCollection, num_classes: int, image_key: str = "image", allow_missing_keys: bool = True
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
        self.num_classes = int(num_classes)
        self.image_key = image_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            label = d[key]
            if label.shape[0] != 1:
                raise ValueError(
                    f"label {_source(d, key)} must be a single-channel index map, found {label.shape[0]} channels "
                    f"(shape {tuple(label.shape)}); save labels as grayscale or palette PNG of class indices."
                )
            values = torch.unique(torch.as_tensor(label)).tolist()
            bad = [v for v in values if v < 0 or v >= self.num_classes or v != int(v)]
            if bad:
                raise ValueError(
                    f"label {_source(d, key)} holds values {_show(bad)} outside the classes 0..{self.num_classes - 1}."
                )
            if self.image_key in d and tuple(d[self.image_key].shape[1:]) != tuple(label.shape[1:]):
                raise ValueError(
                    f"image {_source(d, self.image_key)} has size {tuple(d[self.image_key].shape[1:])} but "
                    f"{key} {_source(d, key)} has size {tuple(label.shape[1:])}; they must match."
                )
        return d


class ToGrayscaled(MapTransform):
    """Average the channels of an RGB(A) image into one (CT slices saved as RGB JPEG).

    Args:
        keys: image keys.
        allow_missing_keys: skip absent keys.
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            if image.shape[0] == 4:
                image = image[:3]
            d[key] = image.mean(dim=0, keepdim=True) if image.shape[0] > 1 else image
        return d


class EnsureChannelsd(MapTransform):
    """Give images the number of channels a network takes: the channel mean for 1, repeats of a gray image for more.

    Args:
        keys: image keys.
        channels: the channels wanted.
        allow_missing_keys: skip absent keys.

    Raises:
        ValueError: for ``channels < 1``, or an image whose channels can be neither averaged
            nor repeated into ``channels`` (e.g. 2 into 3), naming its file.
    """

    def __init__(self, keys: KeysCollection, channels: int, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if int(channels) < 1:
            raise ValueError(f"in_channels must be >= 1, got {channels}.")
        self.channels = int(channels)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            have = image.shape[0]
            if have == 4 and self.channels != 4:
                image, have = image[:3], 3  # drop an alpha channel
            if have == self.channels:
                pass
            elif self.channels == 1:
                image = image.mean(dim=0, keepdim=True)
            elif have == 1:
                image = image.repeat(self.channels, *([1] * (image.ndim - 1)))
            else:
                raise ValueError(
                    f"image {_source(d, key)} has {have} channels, which cannot be turned into in_channels={self.channels}."
                )
            d[key] = image
        return d


class LungRegiond(MapTransform):
    """Add a rough lung mask of a CT slice (a threshold/morphology estimate), e.g. where SupMix may paste lesions.

    The slice's darker pixels (Otsu threshold: aerated lung) are closed with a disk of
    ``closing_radius`` times the slice size, holes are filled (vessels and lesions inside the
    lung), and components smaller than ``min_area`` of the slice are dropped. It is a
    region for data augmentation, not a segmentation: dark air outside the body can be
    included and peripheral consolidation can be missed.

    Args:
        keys: the image key (one channel, or the mean of the channels is used).
        output_key: key of the mask (``1×spatial``, uint8 {0, 1}).
        closing_radius: radius of the closing, as a fraction of the smaller side.
        min_area: smallest kept component, as a fraction of the slice's pixels.
    """

    def __init__(
        self, keys: KeysCollection = "image", output_key: str = "lung", closing_radius: float = 0.03, min_area: float = 0.02
    ) -> None:
        super().__init__(keys)
        self.output_key = output_key
        self.closing_radius = float(closing_radius)
        self.min_area = float(min_area)

    def mask(self, image: torch.Tensor) -> torch.Tensor:
        """The ``1×spatial`` lung mask of one channel-first slice."""
        import numpy as np
        from scipy import ndimage
        from skimage.filters import threshold_otsu
        from skimage.morphology import disk

        array = torch.as_tensor(image).float().mean(0).cpu().numpy()
        if float(array.max()) <= float(array.min()):
            return torch.zeros((1, *array.shape), dtype=torch.uint8)
        dark = array < threshold_otsu(array)
        radius = max(1, int(round(self.closing_radius * min(array.shape))))
        closed = ndimage.binary_fill_holes(ndimage.binary_closing(dark, structure=disk(radius)))
        labels, count = ndimage.label(closed)
        sizes = ndimage.sum(closed, labels, range(1, count + 1)) if count else np.zeros(0)
        keep = np.isin(labels, 1 + np.nonzero(np.asarray(sizes) >= self.min_area * closed.size)[0])
        return torch.from_numpy(keep[None].astype(np.uint8))

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_key] = self.mask(d[key])
        return d


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")


def _keys_for(mode: str, label_keys: Sequence[str]) -> list[str]:
    if mode in ("train", "eval"):
        return ["image", *label_keys]
    return ["image"]


def _augment(keys: list[str], patch_size: Sequence[int], num_patches: int, pos_neg: bool) -> list:
    """Crop to ``patch_size`` (``num_patches`` per image), flips, rot90 and mild intensity changes."""
    if int(num_patches) < 1:
        raise ValueError(f"num_patches must be >= 1, got {num_patches}.")
    chain: list = [SpatialPadd(keys, spatial_size=patch_size, allow_missing_keys=True)]
    if pos_neg and "label" in keys:
        chain.append(
            RandCropByPosNegLabeld(
                keys,
                label_key="label",
                spatial_size=patch_size,
                pos=1,
                neg=1,
                num_samples=int(num_patches),
                allow_missing_keys=True,
            )
        )
    elif num_patches > 1:
        chain.append(
            RandSpatialCropSamplesd(
                keys, roi_size=patch_size, num_samples=int(num_patches), random_size=False, allow_missing_keys=True
            )
        )
    else:
        chain.append(RandSpatialCropd(keys, roi_size=patch_size, random_size=False, allow_missing_keys=True))
    return chain + [
        RandFlipd(keys, prob=0.5, spatial_axis=0, allow_missing_keys=True),
        RandFlipd(keys, prob=0.5, spatial_axis=1, allow_missing_keys=True),
        RandRotate90d(keys, prob=0.5, max_k=3, allow_missing_keys=True),
        RandScaleIntensityd("image", factors=0.1, prob=0.5),
        RandAdjustContrastd("image", prob=0.3, gamma=(0.8, 1.25)),
        RandGaussianNoised("image", prob=0.2, std=0.01),
    ]


class DefaultMaskd(MapTransform):
    """Add an all-ones mask (e.g. a field of view) where an item has none.

    CHASE-like folders may come without FOV masks; evaluation restricts metrics to
    ``fov``, so an absent mask means "the whole image".

    Args:
        keys: mask keys to fill in when absent.
        reference_key: key whose spatial shape the mask takes.
    """

    def __init__(self, keys: KeysCollection, reference_key: str = "image") -> None:
        super().__init__(keys, allow_missing_keys=True)
        self.reference_key = reference_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        for key in self.keys:
            if key not in d and self.reference_key in d:
                reference = d[self.reference_key]
                d[key] = torch.ones((1, *reference.shape[1:]), dtype=torch.long)
        return d


def _finish(keys: list[str], masks: list[str], mode: str) -> list:
    chain: list = [
        EnsureTyped(keys, dtype=torch.float32, track_meta=mode in ("eval", "infer"), allow_missing_keys=True)
    ]
    if masks:
        chain.append(CastToTyped(masks, dtype=torch.long, allow_missing_keys=True))
    return chain


INTENSITY_MODES = ("fixed", "percentile")


def _intensity_scaling(mode: str):
    if mode == "fixed":
        return ScaleIntensityRanged("image", a_min=0, a_max=255, b_min=0, b_max=1, clip=True)
    if mode == "percentile":
        return ScaleIntensityRangePercentilesd("image", lower=1, upper=99, b_min=0, b_max=1, clip=True)
    raise ValueError(f"intensity must be one of {INTENSITY_MODES}, got {mode!r}.")


def chase_transforms(
    mode: str,
    scale: float = 1.0,
    patch_size: Sequence[int] = (128, 128),
    spatial_size: Sequence[int] | None = None,
    num_patches: int = 1,
    pos_neg: bool = False,
    num_classes: int = 2,
    in_channels: int = 3,
) -> Compose:
    """CHASE_DB1 preprocessing: RGB image in [0, 1], binary vessel label, binary FOV mask.

    Chain: :class:`ReadImaged` (PIL, ``(C, H, W)``) → ``EnsureChannelFirstd`` → image
    ``ScaleIntensityRanged`` 0..255 → [0, 1] → label and FOV to {0, 1}
    (:class:`BinarizeMaskd`, 0/1 and 0/255 files) → :class:`ValidateLabeld` (sizes) →
    optional resize (``spatial_size``, else ``scale``; area for the image, nearest for
    masks) → for training, crops and augmentation. Keys absent from an item (no ``fov``)
    are skipped.

    Args:
        mode: ``"train"`` (image, label, fov: patches with augmentation), ``"unlabeled"``
            (image and field-of-view patches with augmentation), ``"eval"`` (whole image, label and FOV,
            with metadata) or ``"infer"`` (whole image, with metadata).
        scale: resize factor (0.5 turns the 999×960 CHASE images into about 500×480).
        patch_size: training patch size ``(H, W)``.
        spatial_size: fixed ``(H, W)`` instead of ``scale``.
        num_patches: patches per image in ``"train"``/``"unlabeled"`` (more than 1 gives a
            list of items per image).
        pos_neg: in ``"train"``, sample patches centred on vessel and background pixels
            equally (``RandCropByPosNegLabeld``) instead of uniformly.
        num_classes: classes of the labels: 2 (vessel masks saved as 0/1 or 0/255) or more
            (index maps 0..num_classes-1, e.g. arteries and veins).
        in_channels: channels the network takes (3: RGB; 1: the channel mean).

    Returns:
        a MONAI ``Compose``; outputs ``image`` float32 ``(3, H, W)``, ``label``/``fov`` int64 ``(1, H, W)``.

    Raises:
        ValueError: for an unknown mode, ``scale <= 0`` or ``num_patches < 1``.
    """
    _check_mode(mode)
    if float(scale) <= 0:
        raise ValueError(f"scale must be > 0, got {scale}.")
    # unlabeled images keep their field of view: SupMix pastes vessels inside it
    keys = ["image", "fov"] if mode == "unlabeled" else _keys_for(mode, ["label", "fov"])
    masks = [k for k in keys if k != "image"]
    chain: list = [
        ReadImaged(keys, allow_missing_keys=True),
        EnsureChannelFirstd(keys, allow_missing_keys=True),
        ScaleIntensityRanged("image", a_min=0, a_max=255, b_min=0, b_max=1, clip=True),
    ]
    if "fov" in keys:
        chain.append(DefaultMaskd("fov"))  # an item without a FOV mask: the whole image
    chain.append(EnsureChannelsd("image", in_channels))
    if masks:
        # binary files may hold 0/255; a multi-class label is an index map as it is
        binary = masks if int(num_classes) == 2 else [m for m in masks if m != "label"]
        labels, others = [m for m in masks if m == "label"], [m for m in masks if m != "label"]
        if binary:
            chain.append(BinarizeMaskd(binary, allow_missing_keys=True))
        if labels:
            chain.append(ValidateLabeld(labels, num_classes=num_classes))
        if others:
            chain.append(ValidateLabeld(others, num_classes=2))
    if spatial_size is not None:
        chain.append(
            Resized(
                keys,
                spatial_size=tuple(spatial_size),
                mode=["area"] + ["nearest"] * len(masks),
                allow_missing_keys=True,
            )
        )
    elif float(scale) != 1.0:
        chain.append(
            Zoomd(keys, zoom=scale, mode=["area"] + ["nearest"] * len(masks), keep_size=False, allow_missing_keys=True)
        )
    if mode in ("train", "unlabeled"):
        chain += _augment(keys, patch_size, num_patches, pos_neg and mode == "train")
    return Compose(chain + _finish(keys, masks, mode))


def covid_transforms(
    mode: str,
    spatial_size: Sequence[int] | None = (256, 256),
    patch_size: Sequence[int] | None = None,
    num_patches: int = 1,
    lung_region: bool = True,
    num_classes: int = 3,
    in_channels: int = 1,
    intensity: str = "fixed",
) -> Compose:
    """COVID-19 CT slice preprocessing: grayscale image in [0, 1], labels 0 / GGO 1 / consolidation 2.

    Chain: :class:`ReadImaged` → ``EnsureChannelFirstd`` → :class:`ToGrayscaled` →
    ``ScaleIntensityRanged`` 0..255 → [0, 1] → :class:`ValidateLabeld` (3 classes, same
    size as the image) → ``Resized`` to ``spatial_size`` (bilinear image, nearest label:
    slices vary in size, about 250-400 px) → crops and augmentation for training. In
    ``"eval"``/``"infer"`` the outputs are ``MetaTensor`` s that record the resize, so
    ``monai.transforms.Invertd`` (or ``meta["spatial_shape"]``, in PIL's ``(W, H)``
    order) brings predictions back to the input size.

    Args:
        mode: as :func:`chase_transforms`.
        spatial_size: common ``(H, W)``; ``None`` keeps the original size.
        patch_size: random crop size for training (``None``: the whole resized slice).
        num_patches: crops per slice in ``"train"``/``"unlabeled"``.
        lung_region: in ``"unlabeled"``, add a rough lung mask ``lung`` (:class:`LungRegiond`)
            for SupMix to paste lesions inside the lungs.
        num_classes: classes of the labels (3: background, GGO, consolidation; 4 with
            MedSeg's pleural effusion).
        in_channels: channels the network takes (1: grayscale; more: the gray slice repeated).
        intensity: ``"fixed"``: 8-bit values 0..255 → [0, 1]; ``"percentile"``: each slice's
            1st..99th percentile → [0, 1] (``ScaleIntensityRangePercentilesd``), which evens out
            slices exported with different CT windows (the COVID-SemiSeg unlabeled slices are
            darker than the labeled MedSeg ones).

    Returns:
        a MONAI ``Compose``; outputs ``image`` float32 ``(1, H, W)``, ``label`` int64 ``(1, H, W)``
        (and ``lung`` int64 ``(1, H, W)`` for unlabeled slices).

    Raises:
        ValueError: for an unknown mode, or ``patch_size`` and ``spatial_size`` both
            ``None`` in a training mode.
    """
    _check_mode(mode)
    keys = _keys_for(mode, ["label"])
    masks = [k for k in keys if k != "image"]
    chain: list = [
        ReadImaged(keys, allow_missing_keys=True),
        EnsureChannelFirstd(keys, allow_missing_keys=True),
        ToGrayscaled("image"),
        _intensity_scaling(intensity),
        EnsureChannelsd("image", in_channels),
    ]
    if masks:
        chain.append(ValidateLabeld(masks, num_classes=num_classes))
    if spatial_size is not None:
        chain.append(
            Resized(
                keys,
                spatial_size=tuple(spatial_size),
                mode=["bilinear"] + ["nearest"] * len(masks),
                allow_missing_keys=True,
            )
        )
    if mode == "unlabeled" and lung_region:
        chain.append(LungRegiond("image", output_key="lung"))
        keys, masks = keys + ["lung"], masks + ["lung"]
    if mode in ("train", "unlabeled"):
        crop = patch_size or spatial_size
        if crop is None:
            raise ValueError(f"mode {mode!r} needs patch_size or spatial_size to build batches of one size.")
        chain += _augment(keys, crop, num_patches, pos_neg=False)
    return Compose(chain + _finish(keys, masks, mode))
