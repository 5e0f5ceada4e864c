"""Deterministic synthetic phantoms: fundus images with vessels and lung CT slices with infection.

They are the default dataset of every bundle and of the tests, so that everything
runs out of the box without real data. They are built to be *hard enough*: thin,
low-contrast vessels under uneven illumination, and faint ground-glass patches whose
intensity overlaps lung texture, so that a model trained on a handful of labeled
phantoms is clearly below one trained on many.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Sequence

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.draw import disk

from monai_supmix.utils.files import make_temp_dir, publish_dir

__all__ = [
    "make_retina_phantom",
    "make_ct_phantom",
    "make_ct_phantom_volume",
    "write_chase_phantoms",
    "write_covid_phantoms",
]


def _check_size(size: Sequence[int], ndim: int = 2) -> tuple[int, ...]:
    """Validate a phantom size argument and return it as a tuple of ints.

    Raises:
        ValueError: when ``size`` does not have ``ndim`` entries of at least 16.
    """
    try:
        out = tuple(int(s) for s in size)
    except TypeError as e:
        raise ValueError(f"size must be a sequence of {ndim} ints, got {size!r}.") from e
    if len(out) != ndim or min(out) < 16 and ndim == 2 or min(out) < 1:
        raise ValueError(f"size must be {ndim} ints (each >= 16 for the in-plane size), got {size!r}.")
    return out


def _smooth_noise(rng: np.random.Generator, shape: Sequence[int], sigma: float) -> np.ndarray:
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return noise / (np.abs(noise).max() + 1e-8)


def _grow_vessel(rng, canvas, start, angle, width, length, depth, max_depth):
    """Draw a tapering, meandering vessel into ``canvas`` (width map) and branch recursively."""
    h, w = canvas.shape
    y, x = start
    for step in range(int(length)):
        angle += rng.normal(0, 0.12)
        y += np.sin(angle)
        x += np.cos(angle)
        if not (0 <= y < h and 0 <= x < w):
            return
        current = max(width * (1.0 - 0.55 * step / length), 0.5)
        rr, cc = disk((y, x), current, shape=canvas.shape)
        canvas[rr, cc] = np.maximum(canvas[rr, cc], current)
        if depth < max_depth and step > 8 and rng.random() < 0.028:
            branch_angle = angle + rng.choice([-1, 1]) * rng.uniform(0.4, 1.0)
            _grow_vessel(
                rng, canvas, (y, x), branch_angle, current * 0.75, length * rng.uniform(0.35, 0.6), depth + 1, max_depth
            )


def make_retina_phantom(seed: int, size: Sequence[int] = (256, 256)) -> dict[str, np.ndarray]:
    """Fundus-like RGB phantom with branching, tapering vessels inside a circular field of view.

    Args:
        seed: random seed; the same seed gives the same phantom.
        size: ``(H, W)``.

    Returns:
        ``{"image": float32 (3, H, W) in [0, 1], "label": uint8 (1, H, W) {0, 1},
        "fov": uint8 (1, H, W) {0, 1}}``; vessels cover roughly 6-10 % of the image
        (9-15 % of the FOV), with widths of about 1 to 5 pixels at 256².

    Raises:
        ValueError: for an invalid ``size``.
    """
    h, w = _check_size(size)
    rng = np.random.default_rng(seed)
    scale = min(h, w) / 256.0
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = h / 2 + rng.normal(0, 2 * scale), w / 2 + rng.normal(0, 2 * scale)
    radius = 0.47 * min(h, w)
    fov = ((yy - cy) ** 2 + (xx - cx) ** 2) <= radius**2
    # optic disc on one side, vessels radiate from it
    side = rng.choice([-1, 1])
    disc_y, disc_x = cy + rng.normal(0, 8 * scale), cx + side * 0.28 * w
    widths = np.zeros((h, w), np.float32)
    n_trunks = int(rng.integers(6, 9))
    base_angles = np.linspace(0, 2 * np.pi, n_trunks, endpoint=False) + rng.uniform(0, 2 * np.pi)
    for angle in base_angles:
        _grow_vessel(
            rng,
            widths,
            (disc_y, disc_x),
            angle,
            width=rng.uniform(1.8, 2.8) * scale,
            length=rng.uniform(110, 170) * scale,
            depth=0,
            max_depth=3,
        )
    vessels = (widths > 0) & fov
    # illumination gradient, low-frequency texture, choroidal pattern
    illumination = 0.75 + 0.25 * np.cos(np.hypot(yy - disc_y, xx - disc_x) / (1.3 * radius) * np.pi / 2)
    illumination *= 1.0 + 0.15 * _smooth_noise(rng, (h, w), 20 * scale)
    texture = 0.08 * _smooth_noise(rng, (h, w), 3 * scale) + 0.05 * _smooth_noise(rng, (h, w), 1.2 * scale)
    base = np.array([0.78, 0.38, 0.16], np.float32)[:, None, None]
    image = base * illumination[None] * (1.0 + texture[None])
    disc_mask = np.hypot(yy - disc_y, xx - disc_x) < 14 * scale
    image[:, disc_mask] = image[:, disc_mask] * 0.4 + np.array([0.95, 0.85, 0.6])[:, None] * 0.6
    # vessel contrast grows with width; the thinnest vessels barely stand out
    contrast = np.clip(0.12 + 0.12 * widths, 0, 0.55) * (1.0 + 0.3 * _smooth_noise(rng, (h, w), 10 * scale))
    darkening = ndimage.gaussian_filter(np.where(vessels, contrast, 0.0), 0.7 * scale)
    image = image * (1.0 - darkening[None] * np.array([0.9, 1.0, 0.8])[:, None, None])
    image += rng.normal(0, 0.035, image.shape)
    image = np.clip(image, 0, 1) * fov[None]
    return {
        "image": image.astype(np.float32),
        "label": vessels[None].astype(np.uint8),
        "fov": fov[None].astype(np.uint8),
    }


def _blobs(rng, mask: np.ndarray, count: int, radius: float, sigma: float) -> np.ndarray:
    """Irregular blobs inside ``mask``: thresholded smooth noise around random centres."""
    out = np.zeros(mask.shape, bool)
    coords = np.argwhere(mask)
    if len(coords) == 0:
        return out
    yy, xx = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]]
    for _ in range(count):
        cy, cx = coords[rng.integers(len(coords))]
        r = radius * rng.uniform(0.5, 1.4)
        dist = np.hypot(yy - cy, xx - cx) / r
        field = 1.0 - dist + 0.45 * _smooth_noise(rng, mask.shape, sigma)
        out |= field > 0.25
    return out & mask


def make_ct_phantom(seed: int, size: Sequence[int] = (256, 256)) -> dict[str, np.ndarray]:
    """Lung-window CT-like slice with ground-glass opacity and consolidation patches.

    Args:
        seed: random seed.
        size: ``(H, W)``.

    Returns:
        ``{"image": float32 (1, H, W) in [0, 1] (lung window), "label": uint8 (1, H, W)}``
        with labels 0 background, 1 ground-glass opacity (about 1-5 % of the pixels),
        2 consolidation (about 0-2 %, some seeds have none).

    Raises:
        ValueError: for an invalid ``size``.
    """
    h, w = _check_size(size)
    rng = np.random.default_rng(seed)
    scale = min(h, w) / 256.0
    yy, xx = np.mgrid[0:h, 0:w]
    body = ((yy - h / 2) / (0.44 * h)) ** 2 + ((xx - w / 2) / (0.47 * w)) ** 2 <= 1
    lungs = np.zeros((h, w), bool)
    for side in (-1, 1):
        ly = h / 2 + rng.normal(0, 3 * scale)
        lx = w / 2 + side * (0.2 + rng.uniform(-0.02, 0.02)) * w
        ry, rx = rng.uniform(0.28, 0.34) * h, rng.uniform(0.14, 0.17) * w
        lung = ((yy - ly) / ry) ** 2 + ((xx - lx) / rx) ** 2 + 0.15 * _smooth_noise(rng, (h, w), 8 * scale) <= 1
        lungs |= lung
    lungs &= body
    image = np.where(body, 0.62, 0.0) + 0.03 * _smooth_noise(rng, (h, w), 2 * scale) * body
    lung_texture = 0.12 + 0.05 * _smooth_noise(rng, (h, w), 1.5 * scale) + 0.04 * _smooth_noise(rng, (h, w), 6 * scale)
    # pulmonary vessels: small bright dots and lines inside the lungs
    vessels = (_smooth_noise(rng, (h, w), 1.0 * scale) > 0.55) & lungs
    image = np.where(lungs, lung_texture + 0.25 * vessels, image)
    severity = rng.uniform(0.2, 1.0)
    ggo = _blobs(rng, lungs, int(rng.integers(1, 5) * severity + 1), 24 * scale, 5 * scale)
    cons = _blobs(rng, lungs & ~ggo, int(rng.integers(1, 4) * severity + 0.5), 16 * scale, 3 * scale)
    haze = ndimage.gaussian_filter(ggo.astype(float), 2 * scale)
    image = image + 0.14 * haze * lungs * (1 + 0.4 * _smooth_noise(rng, (h, w), 3 * scale))
    image = np.where(cons, 0.5 + 0.06 * _smooth_noise(rng, (h, w), 2 * scale), image)
    image = ndimage.gaussian_filter(image, 0.6 * scale) + rng.normal(0, 0.03, (h, w))
    label = np.zeros((h, w), np.uint8)
    label[ggo] = 1
    label[cons] = 2
    return {"image": np.clip(image, 0, 1)[None].astype(np.float32), "label": label[None]}


def make_ct_phantom_volume(seed: int, size: Sequence[int] = (64, 128, 128)) -> dict[str, np.ndarray]:
    """Small CT volume ``(D, H, W)`` in Hounsfield units (int16) with labels, stacked from slices.

    Each slice is :func:`make_ct_phantom` with its own seed (``seed * 1000 + index``),
    mapped from the lung window back to HU (``value * 1400 - 1000``).

    Args:
        seed: random seed.
        size: ``(D, H, W)``.

    Returns:
        ``{"image": int16 (D, H, W) HU in [-1000, 400], "label": uint8 (D, H, W)}``.

    Raises:
        ValueError: for an invalid ``size``.
    """
    size = _check_size(size, ndim=3)
    _check_size(size[1:])
    slices = [make_ct_phantom(seed * 1000 + i, size[1:]) for i in range(int(size[0]))]
    image = np.stack([s["image"][0] for s in slices])
    label = np.stack([s["label"][0] for s in slices])
    hu = image * 1400.0 - 1000.0
    return {"image": hu.astype(np.int16), "label": label}


def _stamp_matches(stamp: str, params: dict) -> bool:
    if not os.path.isfile(stamp):
        return False
    with open(stamp) as f:
        return json.load(f) == params


@contextlib.contextmanager
def _exclusive_lock(path: str):
    """Hold an exclusive advisory lock on ``path`` (POSIX ``flock``; a no-op where it is unavailable)."""
    try:
        import fcntl
    except ImportError:  # Windows: processes of one job do not share a phantom cache there in practice
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_once(out_dir: str, params: dict, writer) -> str:
    """Write a phantom dataset atomically; skip when it already exists with the same parameters.

    Several processes may ask for the same set at once (the ranks of a ``torchrun`` job, parallel
    tests): a lock file beside the folder serialises them, so the first writes the set and the
    others find it finished, and no process ever deletes a set that another one is reading.
    """
    out_dir = os.path.abspath(out_dir)
    stamp = os.path.join(out_dir, "phantom.json")
    if _stamp_matches(stamp, params):
        return out_dir
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    with _exclusive_lock(os.path.join(parent, f".{os.path.basename(out_dir)}.lock")):
        if _stamp_matches(stamp, params):  # written by another process while this one waited
            return out_dir
        tmp = make_temp_dir(out_dir, prefix=".phantom_tmp_")
        try:
            writer(tmp)
            with open(os.path.join(tmp, "phantom.json"), "w") as f:
                json.dump(params, f)
            publish_dir(tmp, out_dir)  # replaces a set with other parameters (or an incomplete copy)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out_dir


def write_chase_phantoms(out_dir: str, num_images: int = 12, size: Sequence[int] = (256, 256), seed: int = 0) -> str:
    """Write retina phantoms in the CHASE_DB1 layout and return the folder.

    Layout (as the real release): ``images/Image_NNX.jpg`` (8-bit RGB JPEG, quality 95,
    ``NN`` = 01, 01, 02, 02, ... and ``X`` alternating L/R), ``labels/Image_NNX_1stHO.png``
    (1-bit PNG, PIL mode ``"1"``, read as 0/1 like the real CHASE_DB1 labels) and
    ``fov/Image_NNX.png`` (8-bit, 255 inside). The parameters are stored in
    ``phantom.json``; a folder that already holds the same phantoms is left as it is.
    The set is written into a temporary sibling folder and renamed, so a crash never
    leaves a half-written dataset.

    Args:
        out_dir: dataset folder (created or replaced).
        num_images: number of images (image ``i`` uses seed ``seed * 10000 + i``).
        size: ``(H, W)``.
        seed: base seed.

    Returns:
        the absolute path of ``out_dir``.

    Raises:
        ValueError: for an invalid ``size`` or ``num_images < 1``.
    """
    size = _check_size(size)
    if int(num_images) < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}.")
    params = {"kind": "chase", "num_images": int(num_images), "size": [int(s) for s in size], "seed": int(seed)}

    def writer(root: str) -> None:
        for sub in ("images", "labels", "fov"):
            os.makedirs(os.path.join(root, sub))
        for i in range(int(num_images)):
            name = f"Image_{i // 2 + 1:02d}{'LR'[i % 2]}"
            ph = make_retina_phantom(seed * 10_000 + i, size)
            rgb = (np.moveaxis(ph["image"], 0, -1) * 255).round().astype(np.uint8)
            Image.fromarray(rgb).save(os.path.join(root, "images", f"{name}.jpg"), quality=95)
            Image.fromarray(ph["label"][0].astype(bool)).save(os.path.join(root, "labels", f"{name}_1stHO.png"))
            Image.fromarray(ph["fov"][0] * 255).save(os.path.join(root, "fov", f"{name}.png"))

    return _write_once(out_dir, params, writer)


def write_covid_phantoms(
    out_dir: str,
    num_labeled: int = 20,
    num_unlabeled: int = 40,
    size: Sequence[int] = (256, 256),
    seed: int = 0,
    layout: str = "slices",
) -> str:
    """Write CT phantoms in a COVID-19 layout and return the folder.

    Args:
        out_dir: dataset folder (created or replaced; written atomically, skipped when
            ``phantom.json`` records the same parameters).
        num_labeled: number of labeled slices.
        num_unlabeled: number of unlabeled slices.
        size: ``(H, W)``.
        seed: base seed.
        layout: ``"slices"``: ``labeled/images/N.jpg`` + ``labeled/labels/N.png`` (palette
            PNG of class indices) and ``unlabeled/images/N.jpg``, as the COVID-SemiSeg copy;
            ``"nifti"``: the MedSeg release, ``tr_im.nii.gz`` (H×W×N HU) + ``tr_mask.nii.gz``
            (labels 0-3, some consolidation re-labelled 3 = pleural effusion) and
            ``unlabeled/vol_0.nii.gz``. Slice PNG labels are palette (``"P"``) images whose
            indices are the classes, like the real COVID-SemiSeg files.

    Returns:
        the absolute path of ``out_dir``.

    Raises:
        ValueError: for an unknown layout, an invalid ``size`` or ``num_labeled < 1``.
    """
    size = _check_size(size)
    if int(num_labeled) < 1 or int(num_unlabeled) < 0:
        raise ValueError(f"num_labeled must be >= 1 and num_unlabeled >= 0, got {num_labeled}, {num_unlabeled}.")
    if layout not in ("slices", "nifti"):
        raise ValueError(f"layout must be 'slices' or 'nifti', got {layout!r}.")
    params = {
        "kind": "covid19",
        "num_labeled": int(num_labeled),
        "num_unlabeled": int(num_unlabeled),
        "size": [int(s) for s in size],
        "seed": int(seed),
        "layout": layout,
    }
    palette = [0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (768 - 12)

    def writer(root: str) -> None:
        labeled = [make_ct_phantom(seed * 10_000 + i, size) for i in range(int(num_labeled))]
        unlabeled = [make_ct_phantom(seed * 10_000 + 5_000 + i, size) for i in range(int(num_unlabeled))]
        if layout == "slices":
            for sub in ("labeled/images", "labeled/labels", "unlabeled/images"):
                os.makedirs(os.path.join(root, sub))
            for i, ph in enumerate(labeled):
                Image.fromarray((ph["image"][0] * 255).round().astype(np.uint8)).save(
                    os.path.join(root, "labeled", "images", f"{i}.jpg"), quality=95
                )
                lab = Image.fromarray(ph["label"][0], mode="P")
                lab.putpalette(palette)
                lab.save(os.path.join(root, "labeled", "labels", f"{i}.png"))
            for i, ph in enumerate(unlabeled):
                Image.fromarray((ph["image"][0] * 255).round().astype(np.uint8)).save(
                    os.path.join(root, "unlabeled", "images", f"{i}.jpg"), quality=95
                )
            return
        import nibabel as nib

        def hu(stack):
            return (np.stack(stack, -1) * 1400.0 - 1000.0).astype(np.int16)

        affine = np.diag([0.8, 0.8, 5.0, 1.0])
        masks = np.stack([ph["label"][0] for ph in labeled], -1).astype(np.uint8)
        masks[(masks == 2) & (np.arange(masks.shape[-1]) % 5 == 4)] = 3  # some effusion, merged back by readers
        nib.save(nib.Nifti1Image(hu([ph["image"][0] for ph in labeled]), affine), os.path.join(root, "tr_im.nii.gz"))
        nib.save(nib.Nifti1Image(masks, affine), os.path.join(root, "tr_mask.nii.gz"))
        if unlabeled:
            os.makedirs(os.path.join(root, "unlabeled"))
            volume = hu([ph["image"][0] for ph in unlabeled])
            nib.save(nib.Nifti1Image(volume, affine), os.path.join(root, "unlabeled", "vol_0.nii.gz"))

    return _write_once(out_dir, params, writer)
