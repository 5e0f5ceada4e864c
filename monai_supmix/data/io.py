"""Inference inputs (2-D images, NIfTI volumes, DICOM series) and label outputs in the input's geometry."""

from __future__ import annotations

import os
import tempfile

import numpy as np

from monai_supmix.data.datalists import IMAGE_EXTENSIONS

__all__ = ["list_inference_inputs", "load_inference_input", "load_dicom_series", "save_label"]


def _is_nifti(path: str) -> bool:
    return path.lower().endswith((".nii", ".nii.gz"))


def _dicom_files(folder: str) -> list[str]:
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(".dcm"))


def list_inference_inputs(folder: str, skip_bad: bool = False) -> list[dict] | tuple[list[dict], list[dict]]:
    """List what a folder holds for inference.

    Items ``{"image": path, "id": stem, "kind": "image2d" | "nifti" | "dicom"}``: 2-D images
    (png/jpg/bmp/tif), NIfTI volumes and DICOM series (a sub-folder of ``.dcm`` files,
    or the folder itself when it holds ``.dcm`` files).

    Args:
        folder: input folder.
        skip_bad: when True, DICOM folders that are not a single series are skipped and
            returned in a second list ``[{"path", "reason"}]`` instead of raising.

    Raises:
        FileNotFoundError: when the folder is missing or holds nothing readable.
        ValueError: for a DICOM folder mixing several series (unless ``skip_bad``).
    """
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"input folder {folder!r} does not exist.")
    items: list[dict] = []
    bad: list[dict] = []
    candidates = [folder] + [os.path.join(folder, n) for n in sorted(os.listdir(folder))]
    for path in candidates:
        if os.path.isdir(path) and _dicom_files(path):
            try:
                _series_uid(path)
            except ValueError as e:
                if not skip_bad:
                    raise
                bad.append({"path": path, "reason": str(e)})
                continue
            items.append({"image": path, "id": os.path.basename(os.path.normpath(path)), "kind": "dicom"})
        elif os.path.isfile(path) and _is_nifti(path):
            stem = os.path.basename(path)[: -len(".nii.gz")] if path.endswith(".gz") else os.path.splitext(os.path.basename(path))[0]
            items.append({"image": path, "id": stem, "kind": "nifti"})
        elif os.path.isfile(path) and path.lower().endswith(IMAGE_EXTENSIONS):
            items.append({"image": path, "id": os.path.splitext(os.path.basename(path))[0], "kind": "image2d"})
    if not items and not bad:
        raise FileNotFoundError(
            f"no inputs in {folder!r}: expected 2-D images ({', '.join(IMAGE_EXTENSIONS)}), NIfTI volumes "
            "(.nii, .nii.gz) or DICOM series (a folder of .dcm files)."
        )
    return (items, bad) if skip_bad else items


def _series_uid(folder: str) -> str:
    import pydicom

    uids = set()
    for f in _dicom_files(folder):
        try:
            uids.add(str(pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID))
        except Exception as e:
            raise ValueError(f"cannot read DICOM file {f!r}: {e}") from e
    if len(uids) != 1:
        raise ValueError(f"DICOM folder {folder!r} mixes {len(uids)} series ({sorted(uids)}); put one series per folder.")
    return uids.pop()


def load_dicom_series(folder: str) -> tuple[np.ndarray, np.ndarray]:
    """Read a DICOM series with pydicom, sorted by position along the slice normal.

    Returns:
        ``(volume, affine)``: ``volume`` is ``(rows, cols, slices)`` float32 in modality
        units (rescale slope/intercept applied); ``affine`` maps (row, col, slice) voxel
        indices to patient (LPS) millimetres.

    Raises:
        ValueError: for a mixed series or an unreadable file (naming it).
    """
    import pydicom

    _series_uid(folder)
    slices = []
    for f in _dicom_files(folder):
        try:
            ds = pydicom.dcmread(f)
            slices.append((ds, ds.pixel_array))
        except Exception as e:
            raise ValueError(f"cannot read DICOM file {f!r}: {e}") from e
    first = slices[0][0]
    orient = np.array([float(v) for v in getattr(first, "ImageOrientationPatient", [1, 0, 0, 0, 1, 0])])
    row_dir, col_dir = orient[:3], orient[3:]
    normal = np.cross(row_dir, col_dir)
    position = lambda ds: np.array([float(v) for v in getattr(ds, "ImagePositionPatient", [0, 0, 0])])  # noqa: E731
    slices.sort(key=lambda s: float(position(s[0]) @ normal))
    volume = np.stack(
        [arr.astype(np.float32) * float(getattr(ds, "RescaleSlope", 1)) + float(getattr(ds, "RescaleIntercept", 0)) for ds, arr in slices],
        axis=-1,
    )
    spacing = [float(v) for v in getattr(first, "PixelSpacing", [1, 1])]
    if len(slices) > 1:
        step = position(slices[1][0]) - position(slices[0][0])
    else:
        step = normal * float(getattr(first, "SliceThickness", 1))
    affine = np.eye(4)
    # voxel (i=row, j=col, k=slice): moving along a row index goes down the columns direction
    affine[:3, 0] = col_dir * spacing[0]
    affine[:3, 1] = row_dir * spacing[1]
    affine[:3, 2] = step
    affine[:3, 3] = position(slices[0][0])
    return volume, affine


def load_inference_input(item: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """Load an item of :func:`list_inference_inputs`.

    Returns:
        ``(array, affine)``: 2-D images as ``(C, H, W)`` uint8 values (affine ``None``);
        volumes as ``(X, Y, Z)`` float32 with their affine.

    Raises:
        ValueError: when the file cannot be read (naming it).
    """
    path, kind = item["image"], item["kind"]
    if kind == "dicom":
        return load_dicom_series(path)
    try:
        if kind == "nifti":
            import nibabel as nib

            img = nib.load(path)
            return np.asarray(img.dataobj, dtype=np.float32), img.affine
        from PIL import Image

        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im)
    except Exception as e:
        raise ValueError(f"cannot read {kind} input {path!r}: {e}") from e
    return (arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)), None


def _atomic_save(path: str, save) -> str:
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


def save_label(label: np.ndarray, item: dict, out_dir: str, affine: np.ndarray | None = None) -> str:
    """Write a label map in the input's geometry; return the file written.

    2-D images get ``<stem>_seg.png`` (uint8 class indices, ``H×W``); NIfTI volumes and
    DICOM series get ``<stem>_seg.nii.gz`` (uint8) with ``affine`` (the input's). The file
    is written under a temporary name and renamed, so it is never half-written.
    """
    label = np.asarray(label).astype(np.uint8)
    if item["kind"] == "image2d":
        from PIL import Image

        path = os.path.join(out_dir, f"{item['id']}_seg.png")
        return _atomic_save(path, lambda tmp: Image.fromarray(np.squeeze(label)).save(tmp, format="PNG"))
    import nibabel as nib

    path = os.path.join(out_dir, f"{item['id']}_seg.nii.gz")
    return _atomic_save(path, lambda tmp: nib.save(nib.Nifti1Image(label, np.eye(4) if affine is None else affine), tmp))
