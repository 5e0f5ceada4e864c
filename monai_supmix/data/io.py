"""Inference inputs (2-D images, NIfTI volumes, DICOM series) and label outputs in the input's geometry.

DICOM series are read with pydicom directly (not MONAI's ``PydicomReader``) so that the
slice order (position along the slice normal), rescale slope/intercept and the affine
are computed explicitly and do not depend on optional decoder plug-ins; volumes are
``(rows, cols, slices)`` with a RAS affine by default, ready to be written as NIfTI.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

import numpy as np

from monai_supmix.data.datalists import IMAGE_EXTENSIONS

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

    Args:
        folder: a folder of ``.dcm`` files.

    Returns:
        the series UID.

    Raises:
        FileNotFoundError: when the folder holds no ``.dcm`` file.
        ValueError: when a file cannot be read as DICOM, or the files belong to several
            series (naming the folder and the UIDs found).
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
            raise ValueError(f"cannot read DICOM file {f!r}: {type(e).__name__}: {e}") from e
        if "SeriesInstanceUID" not in ds:
            raise ValueError(f"DICOM file {f!r} has no SeriesInstanceUID.")
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
            continue
        try:
            _check_readable(path, item["kind"])
        except ValueError as e:
            if not skip_bad:
                raise
            bad.append({"path": path, "reason": str(e)})
            continue
        items.append(item)
    if not items and not bad:
        raise FileNotFoundError(
            f"no inputs in {folder!r}: expected 2-D images ({', '.join(IMAGE_EXTENSIONS)}), NIfTI volumes "
            "(.nii, .nii.gz) or DICOM series (a folder of .dcm files)."
        )
    return (items, bad) if skip_bad else items


def load_dicom_series(folder: str, affine_lps_to_ras: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Read a DICOM series with pydicom, sorted by position along the slice normal.

    Args:
        folder: a folder holding the ``.dcm`` files of one series.
        affine_lps_to_ras: return a RAS affine (NIfTI convention) instead of DICOM's LPS.

    Returns:
        ``(volume, affine)``: ``volume`` is ``(rows, cols, slices)`` float32 in modality
        units (rescale slope/intercept applied); ``affine`` (4×4) maps (row, col, slice)
        voxel indices to patient millimetres.

    Raises:
        FileNotFoundError: when the folder holds no ``.dcm`` file.
        ValueError: for a mixed series, an unreadable file, slices of different sizes or
            several slices at the same position (naming the folder or file).
    """
    import pydicom

    dicom_series_uid(folder)
    slices = []
    for f in _dicom_files(folder):
        try:
            ds = pydicom.dcmread(f)
            slices.append((ds, np.asarray(ds.pixel_array), f))
        except Exception as e:
            raise ValueError(f"cannot read DICOM file {f!r}: {type(e).__name__}: {e}") from e
    first = slices[0][0]
    orient = np.array([float(v) for v in getattr(first, "ImageOrientationPatient", [1, 0, 0, 0, 1, 0])])
    row_dir, col_dir = orient[:3], orient[3:]
    normal = np.cross(row_dir, col_dir)

    def position(ds) -> np.ndarray:
        return np.array([float(v) for v in getattr(ds, "ImagePositionPatient", [0, 0, 0])])

    shapes = {arr.shape for _, arr, _ in slices}
    if len(shapes) != 1:
        raise ValueError(f"DICOM series in {folder!r} has slices of different sizes {sorted(shapes)}.")
    slices.sort(key=lambda s: float(position(s[0]) @ normal))
    depths = [float(position(ds) @ normal) for ds, _, _ in slices]
    if len(slices) > 1 and np.min(np.diff(depths)) < 1e-6:
        raise ValueError(f"DICOM series in {folder!r} has several slices at the same ImagePositionPatient.")
    volume = np.stack(
        [
            arr.astype(np.float32) * float(getattr(ds, "RescaleSlope", 1) or 1)
            + float(getattr(ds, "RescaleIntercept", 0) or 0)
            for ds, arr, _ in slices
        ],
        axis=-1,
    )
    spacing = [float(v) for v in getattr(first, "PixelSpacing", [1, 1])]
    if len(slices) > 1:
        step = (position(slices[-1][0]) - position(slices[0][0])) / (len(slices) - 1)
    else:
        step = normal * float(getattr(first, "SliceThickness", 1) or 1)
    affine = np.eye(4)
    # voxel (i=row, j=col, k=slice): the row index moves along the column direction cosines
    affine[:3, 0] = col_dir * spacing[0]
    affine[:3, 1] = row_dir * spacing[1]
    affine[:3, 2] = step
    affine[:3, 3] = position(slices[0][0])
    if affine_lps_to_ras:
        affine = _LPS_TO_RAS @ affine
    return volume, affine


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
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = ".nii.gz" if path.endswith(".nii.gz") else os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        save(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


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
