"""Full-state checkpoints for resuming semi-supervised training."""

from __future__ import annotations

import glob
import logging
import os

import torch
from monai.handlers import CheckpointLoader, CheckpointSaver

__all__ = ["attach_resumable_checkpoints", "latest_checkpoint", "remove_partial_files"]

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint"


def remove_partial_files(ckpt_dir: str) -> list[str]:
    """Delete temporary files left by a save that was killed half-way; return their paths.

    Ignite's ``DiskSaver`` writes to a temporary file in the same folder and renames it
    only once it is complete, so a killed save leaves at most such a file behind and
    never a truncated checkpoint.
    """
    removed = []
    for path in glob.glob(os.path.join(ckpt_dir, "tmp*")):
        if os.path.isfile(path):
            os.remove(path)
            removed.append(path)
    return removed


def latest_checkpoint(ckpt_dir: str) -> str | None:
    """Return the newest complete full-state checkpoint in ``ckpt_dir`` (or ``None``)."""
    files = glob.glob(os.path.join(ckpt_dir, f"{CHECKPOINT_PREFIX}_*.pt"))
    if not files:
        return None

    def key(path: str) -> tuple[int, float]:
        stem = os.path.basename(path)[len(CHECKPOINT_PREFIX) + 1 : -3]
        digits = "".join(ch for ch in stem.split("=")[-1] if ch.isdigit())
        return (int(digits) if digits else -1, os.path.getmtime(path))

    return max(files, key=key)


def attach_resumable_checkpoints(
    trainer, ckpt_dir: str, resume: bool = False, save_interval: int = 1, n_saved: int = 1
) -> str | None:
    """Attach full-state saving (and, with ``resume``, loading) to a trainer.

    Saves every object of ``trainer.checkpoint_objects()`` (student, teacher,
    discriminator, optimizers, AMP scalers, iteration) with MONAI's
    :class:`~monai.handlers.CheckpointSaver` every ``save_interval`` epochs and at the
    end, as ``checkpoint_epoch=N.pt``. With ``resume=True`` the latest such file is
    loaded with :class:`~monai.handlers.CheckpointLoader` before training starts.
    Only rank 0 writes in a distributed run.

    Returns:
        the checkpoint resumed from, or ``None``.
    """
    os.makedirs(ckpt_dir, exist_ok=True)
    objects = trainer.checkpoint_objects()
    is_main = not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0
    resumed = None
    if resume:
        if is_main:
            for path in remove_partial_files(ckpt_dir):
                logger.warning(f"removed a partial checkpoint file left by an interrupted save: {path}")
        resumed = latest_checkpoint(ckpt_dir)
        if resumed is None:
            logger.warning(f"resume requested but no {CHECKPOINT_PREFIX}_*.pt in {ckpt_dir}: starting from scratch.")
        else:
            logger.info(f"resuming from {resumed}")
            CheckpointLoader(load_path=resumed, load_dict=objects, map_location=trainer.state.device).attach(trainer)
    if is_main:
        saver = CheckpointSaver(
            save_dir=ckpt_dir,
            save_dict=objects,
            file_prefix=CHECKPOINT_PREFIX,
            save_interval=save_interval,
            epoch_level=True,
            save_final=False,
            n_saved=n_saved,
        )
        saver.attach(trainer)
    return resumed


