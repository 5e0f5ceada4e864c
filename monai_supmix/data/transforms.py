"""Preprocessing chains for CHASE_DB1 and COVID-19 CT, shared by training, evaluation and inference."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor, PILReader
from monai.transforms import (
    AsDiscreted,
    CastToTyped,
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    MapTransform,
    RandAdjustContrastd,
    RandFlipd,
    RandRotate90d,
    RandScaleIntensityd,
    RandSpatialCropd,
    Resized,
    ScaleIntensityRanged,
    SpatialPadd,
    Zoomd,
)

__all__ = ["ValidateLabeld", "ToGrayscaled", "chase_transforms", "covid_transforms", "MODES"]

MODES = ("train", "unlabeled", "eval", "infer")


def _source(data: Mapping, key: Hashable) -> str:
    value = data.get(key)
    if isinstance(value, MetaTensor):
        return str(value.meta.get("filename_or_obj", key))
    return str(key)


class ValidateLabeld(MapTransform):
    """Check that labels are class indices in ``[0, num_classes)`` with the image's spatial shape.

    Raises ``ValueError`` naming the label file (from the ``MetaTensor`` metadata) and
    what was found, instead of letting a bad file surface as a cryptic loss error.

    Args:
        keys: label keys.
        num_classes: number of classes.
        image_key: key of the image whose spatial shape the labels must match.
        allow_missing_keys: skip absent keys.
    """

    def __init__(
        self, keys: KeysCollection, num_classes: int, image_key: str = "image", allow_missing_keys: bool = True
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.num_classes = int(num_classes)
        self.image_key = image_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            label = d[key]
            values = torch.unique(torch.as_tensor(label))
            bad = [v for v in values.tolist() if v < 0 or v >= self.num_classes or v != int(v)]
            if bad:
                raise ValueError(
                    f"label {_source(d, key)} holds values {bad[:10]} outside the classes 0..{self.num_classes - 1}."
                )
            if self.image_key in d and tuple(d[self.image_key].shape[1:]) != tuple(label.shape[1:]):
                raise ValueError(
                    f"image {_source(d, self.image_key)} has size {tuple(d[self.image_key].shape[1:])} but label "
                    f"{_source(d, key)} has size {tuple(label.shape[1:])}."
                )
        return d


def _gray(image: torch.Tensor) -> torch.Tensor:
    return image.mean(dim=0, keepdim=True) if image.shape[0] > 1 else image


class ToGrayscaled(MapTransform):
    """Average the channels of an RGB(A) image into one (CT slices saved as RGB JPEG)."""

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = _gray(d[key])
        return d


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")


def _keys_for(mode: str, label_keys: Sequence[str]) -> list[str]:
    if mode in ("train", "eval"):
        return ["image", *label_keys]
    return ["image"]


def _augment(keys: list[str], patch_size: Sequence[int]) -> list:
    return [
        SpatialPadd(keys, spatial_size=patch_size),
        RandSpatialCropd(keys, roi_size=patch_size, random_size=False),
        RandFlipd(keys, prob=0.5, spatial_axis=0),
        RandFlipd(keys, prob=0.5, spatial_axis=1),
        RandRotate90d(keys, prob=0.5, max_k=3),
        RandScaleIntensityd("image", factors=0.1, prob=0.5),
        RandAdjustContrastd("image", prob=0.3, gamma=(0.8, 1.25)),
    ]


def chase_transforms(mode: str, scale: float = 1.0, patch_size: Sequence[int] = (96, 96)) -> Compose:
    """CHASE_DB1 preprocessing: RGB image in [0, 1], binary vessel label, binary FOV mask.

    Images are read with PIL in row-major order (``reverse_indexing=False``), so tensors
    are ``(C, H, W)`` like the files. ``scale`` resizes (area for images, nearest for
    masks): 0.5 turns the 999×960 CHASE images into about 500×480.

    Args:
        mode: ``"train"`` (labeled patches with augmentation), ``"unlabeled"`` (image
            patches with augmentation), ``"eval"`` (whole image, label and FOV) or
            ``"infer"`` (whole image).
        scale: resize factor.
        patch_size: training patch size.
    """
    _check_mode(mode)
    keys = _keys_for(mode, ["label", "fov"])
    masks = [k for k in keys if k != "image"]
    chain: list = [
        LoadImaged(keys, reader=PILReader(reverse_indexing=False), image_only=True, allow_missing_keys=True),
        EnsureChannelFirstd(keys, allow_missing_keys=True),
        ScaleIntensityRanged("image", a_min=0, a_max=255, b_min=0, b_max=1, clip=True),
    ]
    if masks:
        chain.append(AsDiscreted(masks, threshold=0.5, allow_missing_keys=True))
        chain.append(ValidateLabeld("label", num_classes=2))
    if scale != 1.0:
        chain.append(
            Zoomd(keys, zoom=scale, mode=["area"] + ["nearest"] * len(masks), keep_size=False, allow_missing_keys=True)
        )
    if mode in ("train", "unlabeled"):
        chain += _augment(keys, patch_size)
    chain.append(EnsureTyped(keys, dtype=torch.float32, track_meta=mode in ("eval", "infer"), allow_missing_keys=True))
    if masks:
        chain.append(CastToTyped(masks, dtype=torch.long, allow_missing_keys=True))
    return Compose(chain)


def covid_transforms(
    mode: str, spatial_size: Sequence[int] | None = (256, 256), patch_size: Sequence[int] | None = None
) -> Compose:
    """COVID-19 CT slice preprocessing: grayscale image in [0, 1], labels 0 / GGO 1 / consolidation 2.

    Slices vary in size (about 250-400 px), so they are resized to ``spatial_size``
    (bilinear image, nearest label) for batching. Inference resizes the prediction back
    to the original size (see :func:`monai_supmix.bundle.inference.segment_folder`).

    Args:
        mode: as :func:`chase_transforms`.
        spatial_size: common size, ``None`` keeps the original.
        patch_size: random crop size for training (``None``: the whole resized slice).
    """
    _check_mode(mode)
    keys = _keys_for(mode, ["label"])
    chain: list = [
        LoadImaged(keys, reader=PILReader(reverse_indexing=False), image_only=True, allow_missing_keys=True),
        EnsureChannelFirstd(keys, allow_missing_keys=True),
        ToGrayscaled("image"),
        ScaleIntensityRanged("image", a_min=0, a_max=255, b_min=0, b_max=1, clip=True),
    ]
    if "label" in keys:
        chain.append(ValidateLabeld("label", num_classes=3))
    if spatial_size is not None:
        chain.append(
            Resized(keys, spatial_size=spatial_size, mode=["bilinear", "nearest"][: len(keys)], allow_missing_keys=True)
        )
    if mode in ("train", "unlabeled"):
        chain += _augment(keys, patch_size or spatial_size or (256, 256))
    chain.append(EnsureTyped(keys, dtype=torch.float32, track_meta=mode in ("eval", "infer"), allow_missing_keys=True))
    if "label" in keys:
        chain.append(CastToTyped("label", dtype=torch.long))
    return Compose(chain)


