"""Inference inputs (2-D images, NIfTI volumes, DICOM series) and label outputs in the input's geometry.

Volumes are read with MONAI's readers (``NibabelReader``, ``PydicomReader`` with
``swap_ij=False``: ``(rows, cols, slices)`` with a RAS affine, like the NIfTI convention).
What this module adds is what those readers do not check: that a DICOM folder is one
series whose files carry the ``InstanceNumber`` the reader orders them by, and a header
check of every input before any inference runs. The bundles' inference writes with
MONAI's ``SaveImage`` (:mod:`monai_supmix.bundle.inference`); :func:`save_label` is a
stand-alone helper for label maps made elsewhere.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import numpy as np

from monai_supmix.data.datalists import IMAGE_EXTENSIONS
from monai_supmix.utils.files import atomic_write

logger = logging.getLogger(__name__)

__all__ = [
    "list_inference_inputs",
    "load_inference_input",
    "load_dicom_series",
    "dicom_series_uid",
    "save_label",
]

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _is_nifti(path: str) -> bool:
    return path.lower().endswith((".nii", ".nii.gz"))


def _nifti_stem(path: str) -> str:
    name = os.path.basename(path)
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else os.path.splitext(name)[0]


def _dicom_files(folder: str) -> list[str]:
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(".dcm"))


def dicom_series_uid(folder: str) -> str:
    """Return the ``SeriesInstanceUID`` shared by all ``.dcm`` files of ``folder``.

    What MONAI's ``PydicomReader`` does not check before it stacks every file of a folder:
    that they are one series, and that each has the ``InstanceNumber`` it orders them by.

    Args:
        folder: a folder of ``.dcm`` files.

    Returns:
        the series UID.

    Raises:
        FileNotFoundError: when the folder holds no ``.dcm`` file.
        ValueError: when a file cannot be read as DICOM or has no ``InstanceNumber``, or the
            files belong to several series (naming the folder and the UIDs found).
    """
    import pydicom

    files = _dicom_files(folder)
    if not files:
        raise FileNotFoundError(f"DICOM folder {folder!r} holds no .dcm files.")
    uids = set()
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except Exception as e:
            reason = f"{type(e).__name__}: {e}"
            if "force=True" in reason or "File Meta Information" in reason:  # pydicom's advice is not for bundle users
                reason = "no DICOM header (a truncated file, or not DICOM despite its .dcm name)"
            raise ValueError(f"cannot read DICOM file {f!r}: {reason}") from e
        if "SeriesInstanceUID" not in ds:
            raise ValueError(f"DICOM file {f!r} has no SeriesInstanceUID.")
        if getattr(ds, "InstanceNumber", None) in (None, ""):
            # MONAI's PydicomReader orders slices by InstanceNumber and drops files without it
            raise ValueError(f"DICOM file {f!r} has no InstanceNumber: the slices of the series cannot be ordered.")
        uids.add(str(ds.SeriesInstanceUID))
    if len(uids) != 1:
        raise ValueError(
            f"DICOM folder {folder!r} mixes {len(uids)} series (SeriesInstanceUID {sorted(uids)}); "
            "expected one series per folder."
        )
    return uids.pop()


def _check_readable(path: str, kind: str) -> None:
    """Cheap header check of an input (full decoding happens in :func:`load_inference_input`)."""
    if kind == "dicom":
        dicom_series_uid(path)
        return
    try:
        if kind == "nifti":
            import nibabel as nib

            nib.load(path).header.get_data_shape()
        else:
            from PIL import Image

            with Image.open(path) as im:
                im.load()  # decodes the pixels: catches truncated JPEGs that verify() lets through
    except Exception as e:
        raise ValueError(f"cannot read {kind} input {path!r}: {type(e).__name__}: {e}") from e


def list_inference_inputs(
    folder: str, skip_bad: bool = False
) -> list[dict] | tuple[list[dict], list[dict]]:
    """List what a folder holds for inference.

    Items ``{"image": path, "id": stem, "kind": "image2d" | "nifti" | "dicom"}``, sorted by
    name: 2-D images (png/jpg/jpeg/bmp/tif/tiff), NIfTI volumes (``.nii``, ``.nii.gz``) and
    DICOM series (a sub-folder of ``.dcm`` files, or the folder itself when it holds
    ``.dcm`` files; all files of a folder must be one series). Every input's header is
    checked, so unreadable files are found before any inference runs.

    Args:
        folder: input folder.
        skip_bad: when True, unreadable inputs and mixed DICOM series are skipped and
            returned in a second list ``[{"path", "reason"}]`` instead of raising.

    Returns:
        the items, or ``(items, bad)`` with ``skip_bad``.

    Raises:
        FileNotFoundError: when the folder is missing or holds no input.
        ValueError: for an unreadable input or a DICOM folder mixing several series
            (unless ``skip_bad``), naming the file or folder.
    """
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"input folder {folder!r} does not exist.")
    items: list[dict] = []
    bad: list[dict] = []
    candidates = [folder] + [os.path.join(folder, n) for n in sorted(os.listdir(folder))]
    for path in candidates:
        if os.path.isdir(path) and _dicom_files(path):
            item = {"image": path, "id": os.path.basename(os.path.normpath(path)), "kind": "dicom"}
        elif path != folder and os.path.isfile(path) and _is_nifti(path):
            item = {"image": path, "id": _nifti_stem(path), "kind": "nifti"}
        elif path != folder and os.path.isfile(path) and path.lower().endswith(IMAGE_EXTENSIONS):
            item = {"image": path, "id": os.path.splitext(os.path.basename(path))[0], "kind": "image2d"}
        else:
            if path != folder and os.path.isfile(path) and not os.path.basename(path).startswith("."):
                logger.warning(
                    f"ignored {path}: not an input (expected {', '.join(IMAGE_EXTENSIONS)}, .nii, .nii.gz or a DICOM folder)"
                )
            continue
        try:
            _check_readable(path, item["kind"])
        except ValueError as e:
            if not skip_bad:
                raise ValueError(f"{e} (pass --skip_bad True to skip unreadable inputs and segment the rest)") from e
            bad.append({"path": path, "reason": str(e)})
            continue
        items.append(item)
    if not items and not bad:
        # inputs one level down (e.g. ``unlabeled/images/`` of the COVID-SemiSeg layout): name the folder to pass
        hints = [
            p for p in candidates[1:]
            if os.path.isdir(p) and any(n.lower().endswith(IMAGE_EXTENSIONS) or _is_nifti(n) for n in os.listdir(p))
        ]
        hint = f" Inputs were found in {hints[0]!r}: pass that folder as --dataset_dir." if hints else ""
        raise FileNotFoundError(
            f"no inputs in {folder!r}: expected 2-D images ({', '.join(IMAGE_EXTENSIONS)}), NIfTI volumes "
            f"(.nii, .nii.gz) or DICOM series (a folder of .dcm files).{hint}"
        )
    return (items, bad) if skip_bad else items


def load_dicom_series(folder: str, affine_lps_to_ras: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Read a DICOM series with MONAI's ``PydicomReader`` after checking it is one ordered series.

    Args:
        folder: a folder holding the ``.dcm`` files of one series.
        affine_lps_to_ras: return a RAS affine (NIfTI convention) instead of DICOM's LPS.

    Returns:
        ``(volume, affine)``: ``volume`` is ``(rows, cols, slices)`` float32 in modality
        units (rescale slope/intercept applied); ``affine`` (4×4) maps (row, col, slice)
        voxel indices to patient millimetres.

    Raises:
        FileNotFoundError: when the folder holds no ``.dcm`` file.
        ValueError: for a mixed series, a file without ``InstanceNumber``, or a file that
            cannot be read (naming the folder or file).
    """
    from monai.data import PydicomReader
    from monai.transforms import LoadImage

    dicom_series_uid(folder)  # what the reader does not check: one series, slices it can order
    try:
        # swap_ij=False: rows stay the first axis, like the rows of 2-D images and of the training slices
        image = LoadImage(reader=PydicomReader(swap_ij=False, affine_lps_to_ras=affine_lps_to_ras), image_only=True)(
            folder
        )
    except Exception as e:
        raise ValueError(f"cannot read the DICOM series in {folder!r}: {type(e).__name__}: {e}") from e
    return np.asarray(image, dtype=np.float32), np.asarray(image.affine, dtype=np.float64)


def load_inference_input(item: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """Load an item of :func:`list_inference_inputs`.

    Args:
        item: ``{"image", "id", "kind"}``.

    Returns:
        ``(array, affine)``: 2-D images as ``(C, H, W)`` uint8 values (affine ``None``);
        volumes as ``(X, Y, Z)`` float32 with their affine (RAS for DICOM).

    Raises:
        ValueError: when the file cannot be read (naming it) or ``kind`` is unknown.
    """
    path, kind = item["image"], item["kind"]
    if kind == "dicom":
        return load_dicom_series(path)
    if kind not in ("nifti", "image2d"):
        raise ValueError(f"unknown input kind {kind!r} for {path!r}; expected 'image2d', 'nifti' or 'dicom'.")
    try:
        if kind == "nifti":
            import nibabel as nib

            img = nib.load(path)
            return np.asarray(img.dataobj, dtype=np.float32), img.affine
        from PIL import Image

        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im)
    except Exception as e:
        raise ValueError(f"cannot read {kind} input {path!r}: {type(e).__name__}: {e}") from e
    return (arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)), None


def _atomic_save(path: str, save: Callable[[str], None]) -> str:
    return atomic_write(path, save)


def _reference_geometry(item: dict) -> tuple[tuple[int, ...], np.ndarray | None]:
    """Shape (``(H, W)`` for 2-D images) and affine of an input, read from its header."""
    path, kind = item["image"], item["kind"]
    if kind == "image2d":
        from PIL import Image

        with Image.open(path) as im:
            return (im.size[1], im.size[0]), None
    if kind == "nifti":
        import nibabel as nib

        img = nib.load(path)
        return tuple(int(s) for s in img.shape), img.affine
    volume, affine = load_dicom_series(path)
    return volume.shape, affine


def save_label(label: np.ndarray, item: dict, out_dir: str, affine: np.ndarray | None = None) -> str:
    """Write a label map in the input's geometry; return the file written.

    2-D images get ``<stem>_seg.png`` (uint8 class indices, the input's ``H×W``); NIfTI
    volumes and DICOM series get ``<stem>_seg.nii.gz`` (uint8) with the input's affine
    (``affine`` when given, else read from the input: the NIfTI header, or the DICOM
    series' RAS affine). The file is written under a temporary name and renamed with
    ``os.replace``, so it is never half-written.

    Args:
        label: class indices; ``(H, W)`` (or ``(1, H, W)``) for 2-D inputs, the volume's
            shape for NIfTI/DICOM inputs.
        item: the input's item from :func:`list_inference_inputs`.
        out_dir: output folder (created).
        affine: the input's affine, to skip reading it again.

    Returns:
        the path written.

    Raises:
        ValueError: when the label's shape differs from the input's, or values do not fit uint8.
    """
    label = np.asarray(label)
    if label.size and (label.min() < 0 or label.max() > 255):
        raise ValueError(f"label for {item['image']!r} holds values {label.min()}..{label.max()}, expected 0..255.")
    label = label.astype(np.uint8)
    reference_affine = None
    if item["kind"] == "image2d" or affine is None:
        shape, reference_affine = _reference_geometry(item)
    else:
        shape = None
    if shape is not None and label.shape != tuple(shape):
        if np.squeeze(label).shape != tuple(s for s in shape if s != 1):
            raise ValueError(
                f"label of shape {label.shape} does not match input {item['image']!r} of shape {tuple(shape)}."
            )
        label = label.reshape(shape)
    if item["kind"] == "image2d":
        from PIL import Image

        path = os.path.join(out_dir, f"{item['id']}_seg.png")
        return _atomic_save(path, lambda tmp: Image.fromarray(label).save(tmp, format="PNG"))
    import nibabel as nib

    affine = reference_affine if affine is None else np.asarray(affine, dtype=np.float64)
    path = os.path.join(out_dir, f"{item['id']}_seg.nii.gz")
    return _atomic_save(path, lambda tmp: nib.save(nib.Nifti1Image(label, affine), tmp))
