"""Datalists for CHASE_DB1 and COVID-19 CT layouts, and labeled/unlabeled/validation splits."""

from __future__ import annotations

import glob
import os
import random
import re
from collections.abc import Sequence

import numpy as np

from monai_supmix.utils.files import make_temp_dir, publish_dir

__all__ = [
    "chase_datalist",
    "covid_datalist",
    "split_datalist",
    "slice_nifti_volumes",
    "repeat_to_length",
    "IMAGE_EXTENSIONS",
]

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

    Returns:
        the items, sorted by id (``Image_01L``, ``Image_01R``, ``Image_02L``, ...).

    Raises:
        FileNotFoundError: when the folder is missing, holds no ``Image_NNX.jpg``, or an
            image lacks its label (with ``require_labels``).
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"CHASE_DB1 folder {root!r} does not exist (expected Image_NNX.jpg files, in it or in its images/)."
        )
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
        second_dirs = dirs + [os.path.join(root, "labels_2nd")]
        second = _first_existing([os.path.join(d, f"{stem}_2ndHO.png") for d in second_dirs])
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


def _slice_stamp(image_path: str, mask_path: str | None, window: Sequence[float], merge: dict[int, int]) -> dict:
    def sig(path: str | None) -> list | None:
        if path is None:
            return None
        st = os.stat(path)
        return [os.path.abspath(path), st.st_size, int(st.st_mtime)]

    return {
        "image": sig(image_path),
        "mask": sig(mask_path),
        "window": [float(w) for w in window],
        "merge_classes": {str(k): int(v) for k, v in sorted(merge.items())},
    }


def _load_volume(path: str, what: str) -> np.ndarray:
    import nibabel as nib

    try:
        return np.asarray(nib.load(path).dataobj)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} NIfTI file {path!r} does not exist.") from None
    except Exception as e:  # nibabel raises several types for truncated/corrupt files
        raise ValueError(f"cannot read {what} NIfTI file {path!r} (expected a readable .nii/.nii.gz): {e}") from e


def slice_nifti_volumes(
    image_path: str,
    mask_path: str | None,
    out_dir: str,
    window: Sequence[float] = (-1000.0, 400.0),
    merge_classes: dict[int, int] | None = None,
    prefix: str = "",
) -> list[dict]:
    """Slice a NIfTI CT volume (and its mask) into 2-D axial PNG slices.

    The last axis is the slice axis (as in the MedSeg release ``H×W×N``); slice ``k`` is
    ``volume[..., k]`` written as a PNG with the first array axis as rows, the same for
    image and mask, so they stay aligned. Intensities are windowed (``window`` in HU) to
    0-255; ``merge_classes`` relabels mask values (default ``{3: 0}``: pleural effusion
    to background). The slices are written into a temporary folder and renamed; a
    ``slices.json`` stamp (source files, sizes, mtimes, window, merging) lets later calls
    reuse them, and any change regenerates them.

    Args:
        image_path: CT volume (HU).
        mask_path: label volume of the same shape, or ``None``.
        out_dir: folder for the slices (replaced when stale).
        window: ``(low, high)`` HU window mapped to 0-255.
        merge_classes: ``{source: target}`` label relabelling.
        prefix: prefix of the slice ids.

    Returns:
        items ``{"image", "label" (with a mask), "id"}`` in slice order.

    Raises:
        FileNotFoundError: when a volume does not exist.
        ValueError: when a volume cannot be read, has fewer than 2 or more than 3
            dimensions, or image and mask shapes differ.
    """
    import json
    import shutil

    from PIL import Image

    merge_classes = {3: 0} if merge_classes is None else dict(merge_classes)
    if len(window) != 2 or float(window[1]) <= float(window[0]):
        raise ValueError(f"window must be (low, high) HU with low < high, got {window!r}.")
    for path in (image_path, mask_path):
        if path is not None and not os.path.isfile(path):
            raise FileNotFoundError(f"NIfTI file {path!r} does not exist.")
    stamp = _slice_stamp(image_path, mask_path, window, merge_classes)
    stamp_file = os.path.join(out_dir, "slices.json")
    if os.path.isfile(stamp_file):
        with open(stamp_file) as f:
            cached = json.load(f)
        if cached.get("params") == stamp:
            return [
                {k: os.path.join(out_dir, v) if k in ("image", "label") else v for k, v in item.items()}
                for item in cached["items"]
            ]
    volume = _load_volume(image_path, "image").astype(np.float32)
    if volume.ndim not in (2, 3):
        raise ValueError(f"image NIfTI {image_path!r} must be 2-D or 3-D (H×W×N), found shape {volume.shape}.")
    mask = None
    if mask_path is not None:
        mask = np.rint(_load_volume(mask_path, "mask")).astype(np.int64)
        if mask.shape != volume.shape:
            raise ValueError(
                f"image {image_path!r} has shape {volume.shape} but mask {mask_path!r} has shape {mask.shape}."
            )
        merged = mask.copy()
        for src, dst in merge_classes.items():
            merged[mask == int(src)] = int(dst)
        mask = merged
        if mask.min() < 0 or mask.max() > 255:
            raise ValueError(f"mask {mask_path!r} holds values {mask.min()}..{mask.max()}, expected 0..255.")
    if volume.ndim == 2:
        volume = volume[..., None]
        mask = None if mask is None else mask[..., None]
    low, high = float(window[0]), float(window[1])
    scaled = np.clip((volume - low) / (high - low), 0, 1) * 255
    tmp = make_temp_dir(out_dir, prefix=".slices_tmp_")
    try:
        rel_items = []
        for k in range(volume.shape[-1]):
            sid = f"{prefix}{k}"
            Image.fromarray(scaled[..., k].round().astype(np.uint8)).save(os.path.join(tmp, f"{sid}.png"))
            item = {"image": f"{sid}.png", "id": sid}
            if mask is not None:
                Image.fromarray(mask[..., k].astype(np.uint8)).save(os.path.join(tmp, f"{sid}_label.png"))
                item["label"] = f"{sid}_label.png"
            rel_items.append(item)
        with open(os.path.join(tmp, "slices.json"), "w") as f:
            json.dump({"params": stamp, "items": rel_items}, f)
        publish_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [{k: os.path.join(out_dir, v) if k in ("image", "label") else v for k, v in it.items()} for it in rel_items]


def _writable_cache(root: str, cache_dir: str | None) -> str:
    """``cache_dir``, else ``<root>/.supmix_slices`` when ``root`` is writable, else a temp folder."""
    if cache_dir is not None:
        return cache_dir
    if os.access(root, os.W_OK):
        return os.path.join(root, ".supmix_slices")
    import hashlib
    import tempfile

    digest = hashlib.sha1(os.path.abspath(root).encode()).hexdigest()[:12]
    return os.path.join(tempfile.gettempdir(), f"supmix_slices_{digest}")


def _stem(path: str) -> str:
    name = os.path.basename(path)
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else os.path.splitext(name)[0]


def _pair_volumes(volumes: list[str]) -> list[tuple[str, str | None]]:
    """Pair ``*im*`` volumes with ``*mask*`` volumes (``tr_im``/``tr_mask``, ``x_image``/``x_mask``)."""
    masks = {_stem(v): v for v in volumes if "mask" in _stem(v).lower()}
    pairs = []
    for vol in volumes:
        stem = _stem(vol)
        if stem in masks:
            continue
        candidates = {stem.replace("image", "mask", 1), stem.replace("im", "mask", 1), f"{stem}_mask"}
        mask = next((masks[c] for c in sorted(candidates) if c in masks), None)
        pairs.append((vol, mask))
    return pairs


_COVID_LAYOUTS = (
    "labeled/images/N.jpg + labeled/labels/N.png (+ unlabeled/images/*.jpg); images/ + labels/ under the folder; "
    "MedSeg NIfTI tr_im.nii.gz + tr_mask.nii.gz (or *im*.nii* + *mask*.nii* pairs); "
    "or unlabeled/ with .jpg/.png slices or .nii/.nii.gz volumes"
)


def covid_datalist(
    root: str,
    cache_dir: str | None = None,
    window: Sequence[float] = (-1000.0, 400.0),
    merge_classes: dict[int, int] | None = None,
) -> dict[str, list[dict]]:
    """List COVID-19 CT slices as ``{"labeled": [...], "unlabeled": [...]}``.

    Detected layouts:

    - slices (COVID-SemiSeg copy): ``labeled/images/N.jpg`` + ``labeled/labels/N.png`` and
      ``unlabeled/images/*.jpg``; also ``images/`` + ``labels/`` directly under ``root``;
    - MedSeg NIfTI: ``tr_im.nii.gz`` + ``tr_mask.nii.gz`` (or ``*im*.nii*``/``*mask*.nii*``
      pairs), sliced along the last axis to PNG in ``cache_dir`` with the CT ``window``
      mapped to 0-255 and ``merge_classes`` applied (default ``{3: 0}``: pleural effusion
      into background); volumes without a mask are unlabeled;
    - unlabeled slices or volumes in ``unlabeled/`` (or ``unlabeled/images/``).

    Labeled items are ``{"image", "label", "id"}``, unlabeled ones ``{"image", "id"}``;
    slices are sorted by numeric name (``2.jpg`` before ``10.jpg``).

    Args:
        root: dataset folder.
        cache_dir: folder for slices cut from NIfTI volumes; default
            ``<root>/.supmix_slices``, or a folder in the system temp dir when ``root`` is
            read-only.
        window: ``(low, high)`` HU window for NIfTI volumes.
        merge_classes: label relabelling for NIfTI masks (default ``{3: 0}``).

    Returns:
        ``{"labeled": [...], "unlabeled": [...]}``.

    Raises:
        FileNotFoundError: when ``root`` is missing, no known layout is found (the message
            lists them) or an image has no label.
        ValueError: when a NIfTI volume cannot be read or its mask has another shape.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"COVID-19 folder {root!r} does not exist (expected one of: {_COVID_LAYOUTS}).")
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
                    raise FileNotFoundError(
                        f"no label for {image}: expected {os.path.join(label_dir, stem + '.png')}."
                    )
                labeled.append({"image": image, "label": label, "id": stem})
            break
    volumes = _volumes_in(root)
    if not labeled and volumes:
        cache = _writable_cache(root, cache_dir)
        for image, mask in _pair_volumes(volumes):
            base = _stem(image)
            sliced = slice_nifti_volumes(image, mask, os.path.join(cache, base), window, merge_classes, f"{base}_")
            (labeled if mask is not None else unlabeled).extend(sliced)
    unlabeled_root = os.path.join(root, "unlabeled")
    if os.path.isdir(unlabeled_root):
        folder = unlabeled_root
        if os.path.isdir(os.path.join(unlabeled_root, "images")):
            folder = os.path.join(unlabeled_root, "images")
        unlabeled.extend({"image": p, "id": os.path.splitext(os.path.basename(p))[0]} for p in _images_in(folder))
        for vol in _volumes_in(unlabeled_root):
            base = _stem(vol)
            target = os.path.join(_writable_cache(root, cache_dir), "unlabeled", base)
            unlabeled.extend(slice_nifti_volumes(vol, None, target, window, merge_classes, f"{base}_"))
    if not labeled and not unlabeled:
        raise FileNotFoundError(f"no COVID-19 CT data found in {root!r}; expected one of: {_COVID_LAYOUTS}.")
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

    By count, by fraction, or by explicit ids/file names (``labeled_ids``, ``val_ids``
    match an item's ``id``, ``image`` path or image file name); reproducible with
    ``seed``; the three parts are disjoint. Validation is taken first, then the labeled
    part from what is left; everything else is unlabeled. Unlabeled items lose their
    ``label``/``label_2nd`` keys so labels can never leak into semi-supervised training.

    Args:
        items: datalist items (dicts with ``image`` and usually ``label`` and ``id``).
        num_labeled: number of labeled items (default: all not used for validation).
        labeled_fraction: fraction of ``len(items)`` used as labeled (when no count).
        num_val: number of validation items (default 0).
        val_fraction: fraction of ``len(items)`` used for validation (when no count).
        labeled_ids: explicit labeled items (overrides counts and fractions).
        val_ids: explicit validation items (overrides counts and fractions).
        seed: shuffling seed.
        shuffle: shuffle before splitting by count; with False the data's order is kept
            (first items labeled, last items validation).

    Returns:
        ``{"labeled": [...], "unlabeled": [...], "validation": [...]}``; items are the
        input dicts (unlabeled ones are copies without labels).

    Raises:
        ValueError: for impossible counts or fractions (naming the argument and the
            sizes), unknown ids, or ids in both ``labeled_ids`` and ``val_ids``.
    """
    items = list(items)
    n = len(items)
    for name, frac in (("labeled_fraction", labeled_fraction), ("val_fraction", val_fraction)):
        if frac is not None and not 0.0 <= float(frac) <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {frac}.")
    if labeled_ids is not None and val_ids is not None:
        both = set(map(str, labeled_ids)) & set(map(str, val_ids))
        if both:
            raise ValueError(f"labeled_ids and val_ids must be disjoint, both contain {sorted(both)[:5]}.")
    if num_labeled is not None and num_val is not None and num_labeled + num_val > n:
        raise ValueError(
            f"num_labeled={num_labeled} is impossible: num_labeled ({num_labeled}) + num_val ({num_val}) = "
            f"{num_labeled + num_val} is larger than the {n} items of the datalist."
        )
    order = list(range(n))
    if shuffle:
        random.Random(seed).shuffle(order)
    if val_ids is not None:
        wanted = set(map(str, val_ids))
        val_idx = [i for i in order if _match(items[i], wanted)]
        if len(val_idx) != len(wanted):
            raise ValueError(f"val_ids: {len(wanted)} given, {len(val_idx)} found in the datalist of {n} items.")
    else:
        if num_val is None:
            num_val = int(round(val_fraction * n)) if val_fraction is not None else 0
        if not 0 <= num_val <= n:
            raise ValueError(f"num_val must be in [0, {n}] (the datalist size), got {num_val}.")
        val_idx = order[n - num_val :] if num_val else []
    val_set = set(val_idx)
    rest = [i for i in order if i not in val_set]
    if labeled_ids is not None:
        wanted = set(map(str, labeled_ids))
        lab_idx = [i for i in rest if _match(items[i], wanted)]
        if len(lab_idx) != len(wanted):
            raise ValueError(
                f"labeled_ids: {len(wanted)} given, {len(lab_idx)} found outside the validation split of the "
                f"datalist ({n} items)."
            )
    else:
        if num_labeled is None:
            num_labeled = int(round(labeled_fraction * n)) if labeled_fraction is not None else len(rest)
            num_labeled = min(num_labeled, len(rest))
        if num_labeled < 0 or num_labeled > len(rest):
            raise ValueError(
                f"num_labeled={num_labeled} is impossible: the datalist has {n} items and {len(val_idx)} are used "
                f"for validation, {len(rest)} left."
            )
        lab_idx = rest[:num_labeled]
    lab_set = set(lab_idx)
    keep = sorted if not shuffle else list
    return {
        "labeled": [items[i] for i in keep(lab_idx)],
        "unlabeled": [_strip_labels(items[i]) for i in keep([i for i in rest if i not in lab_set])],
        "validation": [items[i] for i in keep(val_idx)],
    }


def repeat_to_length(items: Sequence[dict], length: int) -> list[dict]:
    """Repeat a datalist (in order) until it has at least ``length`` items.

    With fewer labeled images than the batch size (1 or 2 labeled images and batches of
    4), a plain loader would give batches of 1 or 2 patches; repeating the list gives full
    batches of differently cropped and augmented patches of the same images.

    Raises:
        ValueError: when ``items`` is empty.
    """
    items = list(items)
    if not items:
        raise ValueError("repeat_to_length: the datalist is empty.")
    copies = -(-int(length) // len(items)) if len(items) < int(length) else 1
    return items * copies
