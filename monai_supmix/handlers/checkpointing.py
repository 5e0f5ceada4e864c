"""Full-state checkpoints for resuming semi-supervised training."""

from __future__ import annotations

import glob
import logging
import os

import torch
from collections.abc import Mapping

from ignite.handlers import DiskSaver
from monai.handlers import CheckpointLoader, CheckpointSaver

__all__ = ["AtomicCheckpointSaver", "attach_resumable_checkpoints", "latest_checkpoint", "remove_partial_files"]

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint"


class _AtomicDiskSaver(DiskSaver):
    """Ignite ``DiskSaver`` with atomic writes, readable permissions and an optional fixed file name.

    MONAI's ``CheckpointSaver`` writes in place (``atomic=False``, to keep group/other
    read permission), so a process killed mid-save leaves a truncated checkpoint. This
    saver writes a temporary file and renames it (Ignite's ``atomic=True``), then
    restores the usual ``0o644`` permissions. With a fixed file name (``model.pt``) the
    old file is not removed before the new one is saved: the rename replaces it, so a
    crash never leaves the folder without a model.
    """

    def __init__(self, dirname: str, filename: str | None = None) -> None:
        super().__init__(dirname=dirname, require_empty=False, atomic=True)
        self.filename = filename

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        filename = self.filename or filename
        super().__call__(checkpoint, filename, metadata)
        path = os.path.join(self.dirname, filename)
        if os.path.isfile(path):
            os.chmod(path, 0o644)

    def remove(self, filename: str) -> None:
        if self.filename is None:
            super().remove(filename)


class AtomicCheckpointSaver(CheckpointSaver):
    """:class:`monai.handlers.CheckpointSaver` whose files are written atomically.

    Same arguments and file names as MONAI's saver; only the disk writer differs (see
    ``_AtomicDiskSaver``), so ``SIGKILL`` during a save can never corrupt a checkpoint.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name in ("_final_checkpoint", "_key_metric_checkpoint", "_interval_checkpoint"):
            checkpoint = getattr(self, name, None)
            if checkpoint is not None:
                old = checkpoint.save_handler
                checkpoint.save_handler = _AtomicDiskSaver(old.dirname, getattr(old, "filename", None))


def remove_partial_files(ckpt_dir: str) -> list[str]:
    """Delete temporary files left by a save that was killed half-way; return their paths.

    :class:`AtomicCheckpointSaver` writes to a temporary file in the same folder and
    renames it only once it is complete, so a killed save leaves at most such a file
    behind and never a truncated checkpoint.
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
        saver = AtomicCheckpointSaver(
            save_dir=ckpt_dir,
            save_dict=objects,
            file_prefix="",
            save_interval=save_interval,
            epoch_level=True,
            save_final=False,
            n_saved=n_saved,
        )
        saver.attach(trainer)
    return resumed


