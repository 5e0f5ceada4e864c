"""Folder-to-folder inference used by the bundles' ``inference.json``."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import torch
from monai.inferers import Inferer, SlidingWindowInferer
from torch.nn import functional as F

from monai_supmix.data.io import list_inference_inputs, load_inference_input, save_label

__all__ = ["segment_folder", "load_weights", "TASK_INPUTS"]

logger = logging.getLogger(__name__)

#: How each task turns a loaded input into network input: channels and intensity handling.
TASK_INPUTS = {
    "chase": {"channels": 3, "window": None},
    "covid19": {"channels": 1, "window": (-1000.0, 400.0)},
}


def load_weights(network: torch.nn.Module, ckpt_path: str, key: str = "model") -> torch.nn.Module:
    """Load a checkpoint written by the bundle (``{"model": state_dict}`` or a plain state dict).

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


def _prepare_2d(array: np.ndarray, channels: int, window: tuple[float, float] | None, from_volume: bool) -> torch.Tensor:
    """``(C, H, W)`` raw values -> float tensor in [0, 1] with ``channels`` channels."""
    x = torch.as_tensor(array, dtype=torch.float32)
    if from_volume and window is not None:
        low, high = window
        x = ((x - low) / (high - low)).clamp(0, 1)
    else:
        x = x / 255.0
    if x.shape[0] != channels:
        x = x.mean(0, keepdim=True).expand(channels, *x.shape[1:]) if channels != 1 else x.mean(0, keepdim=True)
    return x


def _predict(
    network: torch.nn.Module,
    inferer: Inferer,
    image: torch.Tensor,
    size: Sequence[int] | None,
    scale: float,
    device: torch.device,
) -> np.ndarray:
    """Segment one ``(C, H, W)`` image; returns an ``(H, W)`` uint8 label map at the original size."""
    original = tuple(image.shape[1:])
    x = image[None].to(device)
    if size is not None:
        x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
    elif scale != 1.0:
        x = F.interpolate(x, scale_factor=scale, mode="area")
    with torch.no_grad():
        logits = inferer(x, network)
    logits = F.interpolate(logits.float(), size=original, mode="bilinear", align_corners=False)
    return logits.argmax(1)[0].cpu().numpy().astype(np.uint8)


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
        inferer: override the default sliding-window inferer.
        skip_bad: skip unreadable inputs (they are logged) instead of stopping.

    Returns:
        the written files.

    Raises:
        ValueError: without ``input_dir`` or for an unknown task.
    """
    if input_dir is None:
        raise ValueError("inference needs an input folder: pass --dataset_dir <folder of images, NIfTI or DICOM>.")
    if task not in TASK_INPUTS:
        raise ValueError(f"task must be one of {sorted(TASK_INPUTS)}, got {task!r}.")
    device = torch.device(device)
    if ckpt_path is not None:
        load_weights(network, ckpt_path)
    network = network.to(device).eval()
    inferer = inferer or SlidingWindowInferer(roi_size=patch_size, sw_batch_size=8, overlap=0.25, mode="gaussian")
    listing = list_inference_inputs(input_dir, skip_bad=skip_bad)
    items, bad = listing if skip_bad else (listing, [])
    for entry in bad:
        logger.warning(f"skipped {entry['path']}: {entry['reason']}")
    spec = TASK_INPUTS[task]
    written = []
    for item in items:
        try:
            array, affine = load_inference_input(item)
        except ValueError as e:
            if not skip_bad:
                raise
            logger.warning(f"skipped {item['image']}: {e}")
            continue
        if item["kind"] == "image2d":
            image = _prepare_2d(array, spec["channels"], spec["window"], from_volume=False)
            label = _predict(network, inferer, image, spatial_size, scale, device)
        else:
            volume = array if array.ndim == 3 else array[..., None]
            label = np.stack(
                [
                    _predict(
                        network,
                        inferer,
                        _prepare_2d(volume[None, ..., k], spec["channels"], spec["window"], from_volume=True),
                        spatial_size,
                        scale,
                        device,
                    )
                    for k in range(volume.shape[-1])
                ],
                axis=-1,
            )
        path = save_label(label, item, output_dir, affine=affine)
        logger.info(f"{item['image']} -> {path}")
        written.append(path)
    print(f"Inference finished: {len(written)} label map(s) written to {output_dir}", flush=True)
    return written
