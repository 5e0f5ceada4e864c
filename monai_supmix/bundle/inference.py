"""Folder-to-folder inference used by the bundles' ``inference.json``, built from MONAI's own pieces.

One preprocessing definition per task: a 2-D input goes through the same chain as
training and evaluation (:func:`~monai_supmix.data.chase_transforms` /
:func:`~monai_supmix.data.covid_transforms` in ``"infer"`` mode); a NIfTI volume or a DICOM
series is read by MONAI's ``NibabelReader`` / ``PydicomReader``, windowed, and resized in
plane like the 2-D slices the model was trained on. The network runs through MONAI's
``SlidingWindowInferer`` (2-D) or ``SliceInferer`` (volumes, slice by slice along the last
axis); ``Invertd`` brings the prediction back to the input's geometry, and MONAI's
``SaveImage`` writes it (PNG for 2-D inputs; NIfTI with the input's affine for volumes and
DICOM series), into a temporary folder first, so no output is ever half-written.

``inference.json`` calls :func:`segment_folder` rather than listing one
preprocessing/inferer/postprocessing chain as model-zoo bundles do, because one input
folder may mix 2-D images, NIfTI volumes and DICOM series, each of which needs its own
reader, inferer and writer; the chain of each kind is :func:`inference_preprocessing`.
"""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from monai.data import MetaTensor, NibabelReader, PydicomReader
from monai.inferers import Inferer, SliceInferer, SlidingWindowInferer
from monai.transforms import (
    Compose,
    EnsureTyped,
    Invertd,
    LoadImaged,
    MapTransform,
    Resized,
    SaveImage,
    ScaleIntensityRanged,
    Zoomd,
)

from monai_supmix.data.io import dicom_series_uid, list_inference_inputs
from monai_supmix.data.transforms import EnsureChannelsd
from monai_supmix.utils.files import make_temp_dir, umask_mode

__all__ = ["segment_folder", "load_weights", "TASK_INPUTS", "inference_preprocessing"]

logger = logging.getLogger(__name__)

#: How each task reads inputs: the channels its network takes and the CT window of volumes.
TASK_INPUTS = {
    "chase": {"channels": 3, "window": None},
    "covid19": {"channels": 1, "window": (-1000.0, 400.0)},
}


def load_weights(network: torch.nn.Module, ckpt_path: str, key: str = "model") -> torch.nn.Module:
    """Load a checkpoint written by the bundle (``{"model": state_dict, ...}`` or a plain state dict).

    Raises:
        FileNotFoundError: when ``ckpt_path`` does not exist (train first or pass ``--ckpt_path``).
    """
    if not os.path.isfile(ckpt_path):
        raise FileNotFoundError(
            f"checkpoint {ckpt_path!r} not found: train the bundle first or pass --ckpt_path to a model.pt."
        )
    state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and key in state and isinstance(state[key], dict):
        state = state[key]
    network.load_state_dict(state)
    return network


class _WarnGrayscaled(MapTransform):
    """Warn when an input's channels are changed: a one-channel image copied into a colour model's, an RGBA image's alpha dropped."""

    def __init__(self, keys: str, channels: int) -> None:
        super().__init__(keys)
        self.channels = channels

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            name = getattr(d[key], "meta", {}).get("filename_or_obj", key)
            if d[key].shape[0] == 4 and self.channels in (1, 3):
                warnings.warn(
                    f"{name} has 4 channels (RGBA): its alpha channel is dropped and the colour channels are "
                    f"{'used' if self.channels == 3 else 'averaged to gray'}; save it as RGB to silence this.",
                    stacklevel=2,
                )
            if d[key].shape[0] == 1 and self.channels > 1:
                warnings.warn(
                    f"{name} is a one-channel (grayscale) image but the model was trained on {self.channels}-channel "
                    "(RGB) images: its gray values are copied into every channel, which a colour model may segment worse.",
                    stacklevel=2,
                )
        return d


class _SlicewisePercentiled(MapTransform):
    """Each slice (last axis) of a volume scaled from its 1st-99th percentile to [0, 1], as the 2-D training slices are."""

    def __call__(self, data):
        from monai.transforms import ScaleIntensityRangePercentiles

        scale = ScaleIntensityRangePercentiles(lower=1, upper=99, b_min=0, b_max=1, clip=True)
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            slices = [torch.as_tensor(scale(image[..., k])) for k in range(image.shape[-1])]
            d[key] = image.clone().copy_(torch.stack(slices, dim=-1)) if isinstance(image, torch.Tensor) else image
        return d


def inference_preprocessing(
    task: str,
    kind: str,
    spatial_size: Sequence[int] | None = None,
    scale: float = 1.0,
    in_channels: int | None = None,
    intensity: str = "fixed",
) -> Compose:
    """The preprocessing of one input kind: the task's own ``"infer"`` chain for 2-D images.

    Args:
        task: ``"chase"`` or ``"covid19"``.
        kind: ``"image2d"``, ``"nifti"`` or ``"dicom"`` (see :func:`~monai_supmix.data.list_inference_inputs`).
        spatial_size: in-plane size the model was trained at (COVID-19), else ``None``.
        scale: resize factor of training (CHASE), when ``spatial_size`` is ``None``.
        in_channels: channels of the network (default: the task's).
        intensity: ``"fixed"`` or ``"percentile"`` (COVID-19), as in training.

    Raises:
        ValueError: for an unknown task or kind.
    """
    from monai_supmix.data import chase_transforms, covid_transforms

    if task not in TASK_INPUTS:
        raise ValueError(f"task must be one of {sorted(TASK_INPUTS)}, got {task!r}.")
    channels = int(in_channels or TASK_INPUTS[task]["channels"])
    if kind == "image2d":
        if task == "chase":
            chain = chase_transforms("infer", scale=scale, spatial_size=spatial_size, in_channels=channels)
        else:
            chain = covid_transforms("infer", spatial_size=spatial_size, in_channels=channels, intensity=intensity)
        # the warning must see the file's own channels: before the chain turns gray into RGB
        return Compose([chain.transforms[0], chain.transforms[1], _WarnGrayscaled("image", channels), *chain.transforms[2:]])
    if kind not in ("nifti", "dicom"):
        raise ValueError(f"unknown input kind {kind!r}; expected 'image2d', 'nifti' or 'dicom'.")
    # DICOM rows stay the first axis (swap_ij=False), like the rows of the 2-D training slices
    reader = PydicomReader(swap_ij=False) if kind == "dicom" else NibabelReader()
    window = TASK_INPUTS[task]["window"] or (0.0, 255.0)
    chain: list = [
        LoadImaged("image", reader=reader, image_only=True, ensure_channel_first=True),
        ScaleIntensityRanged("image", a_min=window[0], a_max=window[1], b_min=0.0, b_max=1.0, clip=True),
    ]
    if intensity == "percentile":
        chain.append(_SlicewisePercentiled("image"))
    chain.append(EnsureChannelsd("image", channels))
    if spatial_size is not None:
        chain.append(Resized("image", spatial_size=(*spatial_size, -1), mode="bilinear"))
    elif float(scale) != 1.0:
        chain.append(Zoomd("image", zoom=(scale, scale, 1.0), mode="area", keep_size=False))
    chain.append(EnsureTyped("image", dtype=torch.float32, track_meta=True))
    return Compose(chain)


def _save(label: MetaTensor, kind: str, output_dir: str) -> str:
    """Write one label map with MONAI's ``SaveImage`` into a temporary folder, then move it into place."""
    tmp = make_temp_dir(os.path.join(output_dir, "x"), prefix=".tmp_seg_")
    try:
        if kind == "image2d":
            saver = SaveImage(output_dir=tmp, output_postfix="seg", output_ext=".png", separate_folder=False,
                              output_dtype=np.uint8, resample=False, scale=None, writer="PILWriter", print_log=False)
            # arrays are (rows, cols) like the file: no transposition on the way out
            saver.set_options(write_kwargs={"reverse_indexing": False})
        else:
            saver = SaveImage(output_dir=tmp, output_postfix="seg", output_ext=".nii.gz", separate_folder=False,
                              output_dtype=np.uint8, resample=False, writer="NibabelWriter", print_log=False)
        saver(label)
        (name,) = os.listdir(tmp)
        target = os.path.join(output_dir, name)
        os.chmod(os.path.join(tmp, name), umask_mode())
        os.replace(os.path.join(tmp, name), target)
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _reason(error: BaseException) -> str:
    """A reader's error as one line a bundle user can act on (pydicom's "use force=True" is not for them)."""
    text = " ".join(str(error).split())
    if "force=True" in text or "File is missing DICOM File Meta Information" in text:
        return "not a readable DICOM file (no DICOM header: a truncated or non-DICOM .dcm file)"
    return text


def _segment(network, inferer, preprocess: Compose, item: dict, device: torch.device) -> MetaTensor:
    """Preprocess, predict and invert one input; returns its label map as a ``MetaTensor`` in its own geometry."""
    data = preprocess({"image": item["image"]})
    image = data["image"]
    with torch.no_grad():
        logits = inferer(image[None].to(device), network)[0].float().cpu()
    data["pred"] = MetaTensor(logits, meta=dict(image.meta), applied_operations=list(image.applied_operations))
    data = Invertd("pred", transform=preprocess, orig_keys="image", nearest_interp=False)(data)
    pred = data["pred"]
    label = pred.argmax(0, keepdim=True).to(torch.uint8)
    label = MetaTensor(label, meta=dict(pred.meta))
    if item["kind"] == "dicom":  # the series folder, not one of its files, names the output
        label.meta["filename_or_obj"] = os.path.join(item["image"], os.path.basename(os.path.normpath(item["image"])))
    return label


def segment_folder(
    network: torch.nn.Module,
    input_dir: str | None,
    output_dir: str,
    task: str,
    ckpt_path: str | None = None,
    patch_size: Sequence[int] = (96, 96),
    spatial_size: Sequence[int] | None = None,
    scale: float = 1.0,
    device: str | torch.device = "cpu",
    inferer: Inferer | None = None,
    skip_bad: bool = False,
    in_channels: int | None = None,
    intensity: str = "fixed",
) -> list[str]:
    """Segment every input in ``input_dir`` and write one label map per input to ``output_dir``.

    2-D images give ``<stem>_seg.png`` at the input's size; NIfTI volumes and DICOM series
    are segmented slice by slice along the last axis and give ``<stem>_seg.nii.gz`` with
    the input's affine.

    Args:
        network: the segmentation network.
        input_dir: folder of inputs (see :func:`monai_supmix.data.list_inference_inputs`).
        output_dir: folder for the label maps (created).
        task: ``"chase"`` or ``"covid19"``.
        ckpt_path: weights to load first (``None``: use the network as it is).
        patch_size: sliding-window size.
        spatial_size: resize every slice to this size before inference (COVID-19 was trained at a fixed size).
        scale: resize factor used in training (CHASE), when ``spatial_size`` is ``None``.
        device: device.
        inferer: override the default sliding-window inferer of 2-D inputs.
        skip_bad: skip unreadable inputs (they are listed and counted) instead of stopping.
        in_channels: channels the network takes (default: the task's, 3 for chase, 1 for covid19).
        intensity: ``"fixed"`` or ``"percentile"``, as in training (:func:`monai_supmix.data.covid_transforms`).

    Returns:
        the written files.

    Raises:
        ValueError: without ``input_dir``, for an unknown task, or an unreadable input (unless ``skip_bad``).
    """
    if input_dir is None:
        raise ValueError("inference needs an input folder: pass --dataset_dir <folder of images, NIfTI or DICOM>.")
    if task not in TASK_INPUTS:
        raise ValueError(f"task must be one of {sorted(TASK_INPUTS)}, got {task!r}.")
    device = torch.device(device)
    if ckpt_path is not None:
        load_weights(network, ckpt_path)
    network = network.to(device).eval()
    window_2d = inferer or SlidingWindowInferer(roi_size=patch_size, sw_batch_size=8, overlap=0.25, mode="gaussian")
    window_3d = SliceInferer(roi_size=patch_size, sw_batch_size=8, overlap=0.25, mode="gaussian", spatial_dim=2)
    listing = list_inference_inputs(input_dir, skip_bad=skip_bad)
    items, bad = listing if skip_bad else (listing, [])
    bad = list(bad)
    for entry in bad:
        logger.warning(f"skipped {entry['path']}: {entry['reason']}")
    os.makedirs(output_dir, exist_ok=True)
    written = []
    for item in items:
        preprocess = inference_preprocessing(task, item["kind"], spatial_size, scale, in_channels, intensity)
        try:
            if item["kind"] == "dicom":
                dicom_series_uid(item["image"])  # MONAI's reader would silently stack several series
            label = _segment(network, window_2d if item["kind"] == "image2d" else window_3d, preprocess, item, device)
        except (ValueError, RuntimeError, OSError) as e:
            if not skip_bad:
                raise ValueError(
                    f"cannot segment {item['image']!r}: {_reason(e)} (pass --skip_bad True to skip unreadable inputs "
                    "and segment the rest)"
                ) from e
            logger.warning(f"skipped {item['image']}: {_reason(e)}")
            bad.append({"path": item["image"], "reason": _reason(e)})
            continue
        path = _save(label, item["kind"], output_dir)
        logger.info(f"{item['image']} -> {path}")
        written.append(path)
    skipped = f"; {len(bad)} input(s) skipped as unreadable (listed above)" if bad else ""
    print(f"Inference finished: {len(written)} label map(s) written to {output_dir}{skipped}", flush=True)
    return written
