"""Datalists for CHASE_DB1 and COVID-19 CT layouts, and labeled/unlabeled/validation splits."""

from __future__ import annotations

import glob
import os
import random
import re
from collections.abc import Sequence

import numpy as np

__all__ = ["chase_datalist", "covid_datalist", "split_datalist", "slice_nifti_volumes", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_CHASE_IMAGE = re.compile(r"^(Image_\d+[LR])\.(jpg|jpeg|png|tif|tiff)$", re.IGNORECASE)


def _first_existing(candidates: Sequence[str]) -> str | None:
    return next((c for c in candidates if os.path.isfile(c)), None)


def chase_datalist(root: str, require_labels: bool = True) -> list[dict]:
    """List CHASE_DB1 images with their labels and field-of-view masks.

    Accepts the files in one folder or in ``images/``, ``labels/``, ``labels_2nd/`` and
    ``fov/`` sub-folders. Items: ``{"image", "label" (1stHO), "label_2nd" (2ndHO, when
    present), "fov" (when present), "id"}``, sorted by name.

    Args:
        root: dataset folder.
        require_labels: raise when an image has no ``_1stHO`` label; with False such
            images are listed without ``label``.

    Raises:
        FileNotFoundError: when the folder is missing, holds no ``Image_NNX.jpg``, or an
            image lacks its label (with ``require_labels``).
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"CHASE_DB1 folder {root!r} does not exist.")
    image_dir = os.path.join(root, "images") if os.path.isdir(os.path.join(root, "images")) else root
    items = []
    for name in sorted(os.listdir(image_dir)):
        match = _CHASE_IMAGE.match(name)
        if not match:
            continue
        stem = match.group(1)
        item = {"image": os.path.join(image_dir, name), "id": stem}
        dirs = [root, os.path.join(root, "labels"), image_dir]
        label = _first_existing([os.path.join(d, f"{stem}_1stHO.png") for d in dirs])
        second = _first_existing([os.path.join(d, f"{stem}_2ndHO.png") for d in dirs + [os.path.join(root, "labels_2nd")]])
        fov = _first_existing(
            [os.path.join(root, "fov", f"{stem}.png")]
            + [os.path.join(d, f"{stem}_fov.png") for d in dirs]
            + [os.path.join(d, f"{stem}_FOV.png") for d in dirs]
        )
        if label is not None:
            item["label"] = label
        elif require_labels:
            raise FileNotFoundError(
                f"no label for {item['image']}: expected {stem}_1stHO.png in {root} or {os.path.join(root, 'labels')}."
            )
        if second is not None:
            item["label_2nd"] = second
        if fov is not None:
            item["fov"] = fov
        items.append(item)
    if not items:
        raise FileNotFoundError(
            f"no CHASE_DB1 images in {root!r}: expected files named Image_NNX.jpg (e.g. Image_01L.jpg) in the "
            "folder or in its images/ sub-folder."
        )
    return items


def _numeric_key(path: str) -> tuple:
    stem = os.path.splitext(os.path.basename(path))[0]
    parts = re.split(r"(\d+)", stem)
    return tuple(int(p) if p.isdigit() else p for p in parts)


def _images_in(folder: str) -> list[str]:
    files = [f for f in glob.glob(os.path.join(folder, "*")) if f.lower().endswith(IMAGE_EXTENSIONS)]
    return sorted(files, key=_numeric_key)


def _volumes_in(folder: str) -> list[str]:
    return sorted(glob.glob(os.path.join(folder, "*.nii")) + glob.glob(os.path.join(folder, "*.nii.gz")))


def slice_nifti_volumes(
    image_path: str,
    mask_path: str | None,
    out_dir: str,
    window: tuple[float, float] = (-1000.0, 400.0),
    merge_classes: dict[int, int] | None = None,
    prefix: str = "",
) -> list[dict]:
    """Slice a NIfTI CT volume (and its mask) into 2-D axial PNG slices.

    The last axis is the slice axis (as in the MedSeg release ``H×W×N``). Intensities
    are windowed (``window`` in HU) to 0-255; ``merge_classes`` relabels mask values
    (default ``{3: 0}``: pleural effusion to background). Existing slices are reused.

    Returns:
        items ``{"image", "label" (with a mask), "id"}``.

    Raises:
        ValueError: when image and mask shapes differ.
    """
    import nibabel as nib
    from PIL import Image

    merge_classes = {3: 0} if merge_classes is None else merge_classes
    try:
        volume = np.asarray(nib.load(image_path).dataobj, dtype=np.float32)
    except Exception as e:  # nibabel raises several types for truncated/corrupt files
        raise ValueError(f"cannot read NIfTI volume {image_path!r}: {e}") from e
    mask = None
    if mask_path is not None:
        mask = np.asarray(nib.load(mask_path).dataobj).astype(np.int64)
        if mask.shape != volume.shape:
            raise ValueError(f"image {image_path!r} has shape {volume.shape} but mask {mask_path!r} has {mask.shape}.")
        for src, dst in merge_classes.items():
            mask[mask == src] = dst
    if volume.ndim == 2:
        volume = volume[..., None]
        mask = None if mask is None else mask[..., None]
    low, high = window
    scaled = np.clip((volume - low) / (high - low), 0, 1) * 255
    os.makedirs(out_dir, exist_ok=True)
    items = []
    for k in range(volume.shape[-1]):
        sid = f"{prefix}{k}"
        image_file = os.path.join(out_dir, f"{sid}.png")
        if not os.path.isfile(image_file):
            Image.fromarray(scaled[..., k].round().astype(np.uint8)).save(image_file)
        item = {"image": image_file, "id": sid}
        if mask is not None:
            label_file = os.path.join(out_dir, f"{sid}_label.png")
            if not os.path.isfile(label_file):
                Image.fromarray(mask[..., k].astype(np.uint8)).save(label_file)
            item["label"] = label_file
        items.append(item)
    return items


def covid_datalist(root: str, cache_dir: str | None = None, window: tuple[float, float] = (-1000.0, 400.0)) -> dict:
    """List COVID-19 CT slices as ``{"labeled": [...], "unlabeled": [...]}``.

    Detected layouts:

    - slices (COVID-SemiSeg copy): ``labeled/images/N.jpg`` + ``labeled/labels/N.png`` and
      ``unlabeled/images/*.jpg``; also ``images/`` + ``labels/`` directly under ``root``;
    - MedSeg NIfTI: ``tr_im.nii.gz`` + ``tr_mask.nii.gz`` (or ``*im*.nii*``/``*mask*.nii*``
      pairs), sliced to PNG in ``cache_dir`` (default ``<root>/.supmix_slices``) with a
      lung window and pleural effusion merged into background;
    - unlabeled volumes or slices in ``unlabeled/``.

    Items are sorted by numeric name.

    Raises:
        FileNotFoundError: when no known layout is found (the message lists them) or an
            image has no label.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"COVID-19 folder {root!r} does not exist.")
    labeled: list[dict] = []
    unlabeled: list[dict] = []
    for image_dir, label_dir in (
        (os.path.join(root, "labeled", "images"), os.path.join(root, "labeled", "labels")),
        (os.path.join(root, "images"), os.path.join(root, "labels")),
    ):
        if os.path.isdir(image_dir) and os.path.isdir(label_dir):
            for image in _images_in(image_dir):
                stem = os.path.splitext(os.path.basename(image))[0]
                label = _first_existing([os.path.join(label_dir, stem + ext) for ext in (".png", ".PNG")])
                if label is None:
                    raise FileNotFoundError(f"no label for {image}: expected {os.path.join(label_dir, stem + '.png')}.")
                labeled.append({"image": image, "label": label, "id": stem})
            break
    volumes = _volumes_in(root)
    if not labeled and volumes:
        cache_dir = cache_dir or os.path.join(root, ".supmix_slices")
        masks = [v for v in volumes if "mask" in os.path.basename(v).lower()]
        images = [v for v in volumes if v not in masks]
        for image in images:
            base = os.path.basename(image).split(".")[0]
            candidates = [m for m in masks if os.path.basename(m).split(".")[0] == base.replace("im", "mask", 1)]
            mask = candidates[0] if candidates else None
            labeled_or_not = slice_nifti_volumes(image, mask, os.path.join(cache_dir, base), window, prefix=f"{base}_")
            (labeled if mask is not None else unlabeled).extend(labeled_or_not)
    unlabeled_root = os.path.join(root, "unlabeled")
    if os.path.isdir(unlabeled_root):
        folder = os.path.join(unlabeled_root, "images") if os.path.isdir(os.path.join(unlabeled_root, "images")) else unlabeled_root
        unlabeled.extend({"image": p, "id": os.path.splitext(os.path.basename(p))[0]} for p in _images_in(folder))
        for vol in _volumes_in(unlabeled_root):
            base = os.path.basename(vol).split(".")[0]
            target = os.path.join(cache_dir or os.path.join(root, ".supmix_slices"), "unlabeled", base)
            unlabeled.extend(slice_nifti_volumes(vol, None, target, window, prefix=f"{base}_"))
    if not labeled and not unlabeled:
        raise FileNotFoundError(
            f"no COVID-19 CT data found in {root!r}; expected one of: labeled/images/N.jpg + labeled/labels/N.png "
            "(+ unlabeled/images/), images/ + labels/, or MedSeg NIfTI tr_im.nii.gz + tr_mask.nii.gz."
        )
    return {"labeled": labeled, "unlabeled": unlabeled}


def _strip_labels(item: dict) -> dict:
    return {k: v for k, v in item.items() if k not in ("label", "label_2nd")}


def _match(item: dict, keys: set[str]) -> bool:
    return item.get("id") in keys or item.get("image") in keys or os.path.basename(str(item.get("image"))) in keys


def split_datalist(
    items: Sequence[dict],
    num_labeled: int | None = None,
    labeled_fraction: float | None = None,
    num_val: int | None = None,
    val_fraction: float | None = None,
    labeled_ids: Sequence[str] | None = None,
    val_ids: Sequence[str] | None = None,
    seed: int = 0,
    shuffle: bool = True,
) -> dict[str, list[dict]]:
    """Split a labeled datalist into ``labeled``, ``unlabeled`` and ``validation``.

    By count, by fraction, or by explicit ids/file names (``labeled_ids``, ``val_ids``);
    reproducible with ``seed``; the three parts are disjoint. Unlabeled items lose their
    ``label``/``label_2nd`` keys so labels can never leak into semi-supervised training.

    Raises:
        ValueError: for impossible counts (naming the argument) or unknown ids.
    """
    items = list(items)
    n = len(items)
    order = list(range(n))
    if shuffle:
        random.Random(seed).shuffle(order)
    if val_ids is not None:
        wanted = set(map(str, val_ids))
        val_idx = [i for i in range(n) if _match(items[i], wanted)]
        if len(val_idx) != len(wanted):
            raise ValueError(f"val_ids: {len(wanted)} given, {len(val_idx)} found in the datalist.")
    else:
        if num_val is None:
            num_val = int(round(val_fraction * n)) if val_fraction is not None else 0
        if not 0 <= num_val <= n:
            raise ValueError(f"num_val must be in [0, {n}], got {num_val}.")
        val_idx = order[n - num_val :] if num_val else []
    rest = [i for i in order if i not in set(val_idx)]
    if labeled_ids is not None:
        wanted = set(map(str, labeled_ids))
        lab_idx = [i for i in rest if _match(items[i], wanted)]
        if len(lab_idx) != len(wanted):
            raise ValueError(f"labeled_ids: {len(wanted)} given, {len(lab_idx)} found outside the validation split.")
    else:
        if num_labeled is None:
            num_labeled = int(round(labeled_fraction * n)) if labeled_fraction is not None else len(rest)
        if num_labeled < 0 or num_labeled > len(rest):
            raise ValueError(
                f"num_labeled={num_labeled} is impossible: {n} items, {len(val_idx)} used for validation, "
                f"{len(rest)} left."
            )
        lab_idx = rest[:num_labeled]
    lab_set = set(lab_idx)
    keep = sorted if not shuffle else list
    return {
        "labeled": [items[i] for i in keep(lab_idx)],
        "unlabeled": [_strip_labels(items[i]) for i in keep([i for i in rest if i not in lab_set])],
        "validation": [items[i] for i in keep(val_idx)],
    }
