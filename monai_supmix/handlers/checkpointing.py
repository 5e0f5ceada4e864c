"""Full-state checkpoints for resuming semi-supervised training."""

from __future__ import annotations

import glob
import logging
import os

import torch
from collections.abc import Mapping

from ignite.engine import Events
from ignite.handlers import Checkpoint, DiskSaver
from monai.handlers import CheckpointLoader

from monai_supmix.utils.files import umask_mode

__all__ = [
    "AtomicCheckpointSaver",
    "attach_resumable_checkpoints",
    "latest_checkpoint",
    "prune_checkpoints",
    "remove_partial_files",
]

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint"


class _AtomicDiskSaver(DiskSaver):
    """Ignite ``DiskSaver`` with atomic writes, readable permissions and an optional fixed file name.

    MONAI's ``CheckpointSaver`` writes in place (``atomic=False``, to keep group/other
    read permission), so a process killed mid-save leaves a truncated checkpoint. This
    writer writes a temporary file and renames it (Ignite's ``atomic=True``), then
    gives it the permissions the umask allows (``0o644`` under the usual ``022``). With a fixed file name (``model.pt``) the
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
            os.chmod(path, umask_mode())

    def remove(self, filename: str) -> None:
        # a fixed file name is replaced by the rename; a rotated file may already be gone
        # (removed by ``prune_checkpoints`` or by hand), which is what removing it wanted
        if self.filename is None and os.path.exists(os.path.join(self.dirname, filename)):
            super().remove(filename)


class AtomicCheckpointSaver:
    """Checkpoint saver with atomic writes, for MONAI ``handlers`` lists (same arguments as MONAI's, the ones the bundles use).

    MONAI's :class:`~monai.handlers.CheckpointSaver` builds its Ignite ``Checkpoint`` objects
    with a private, non-atomic disk writer and has no argument to replace it, so this class
    builds them itself from Ignite's public :class:`~ignite.handlers.Checkpoint` and the
    atomic ``_AtomicDiskSaver``: ``SIGKILL`` during a save can never corrupt a checkpoint.
    File names are MONAI's (``model.pt`` for a fixed key-metric file name,
    ``checkpoint_epoch=N.pt`` for interval saves).

    Args:
        save_dir: folder of the checkpoints.
        save_dict: objects to save (anything with ``state_dict``).
        file_prefix: prefix of generated file names.
        save_key_metric: save when the engine's key metric improves (on ``EPOCH_COMPLETED``).
        key_metric_name: metric to track (default: the engine's ``key_metric_name``).
        key_metric_n_saved: how many best checkpoints to keep.
        key_metric_filename: fixed file name of the best checkpoint (e.g. ``model.pt``).
        epoch_level: interval saves count epochs (else iterations).
        save_interval: save every this many epochs/iterations (0: never).
        n_saved: how many interval checkpoints to keep (``None``: all).

    Raises:
        ValueError: for a fixed key-metric file name with ``key_metric_n_saved > 1``.
    """

    def __init__(
        self,
        save_dir: str,
        save_dict: dict,
        file_prefix: str = "",
        save_key_metric: bool = False,
        key_metric_name: str | None = None,
        key_metric_n_saved: int = 1,
        key_metric_filename: str | None = None,
        epoch_level: bool = True,
        save_interval: int = 0,
        n_saved: int | None = None,
    ) -> None:
        if key_metric_filename is not None and key_metric_n_saved > 1:
            raise ValueError("a fixed key_metric_filename keeps one model: key_metric_n_saved must be 1.")
        self.save_dir = save_dir
        self.epoch_level = epoch_level
        self.save_interval = int(save_interval)
        self.key_metric_checkpoint: Checkpoint | None = None
        self.interval_checkpoint: Checkpoint | None = None
        if save_key_metric:

            def score(engine) -> float:
                name = key_metric_name or getattr(engine.state, "key_metric_name", None)
                if name is None:
                    raise ValueError("save_key_metric=True needs key_metric_name or an engine with a key metric.")
                return float(engine.state.metrics[name])

            self.key_metric_checkpoint = Checkpoint(
                to_save=save_dict,
                save_handler=_AtomicDiskSaver(save_dir, key_metric_filename),
                filename_prefix=file_prefix,
                score_function=score,
                score_name="key_metric",
                n_saved=key_metric_n_saved,
            )
        if self.save_interval > 0:

            def step(engine) -> int:
                return engine.state.epoch if epoch_level else engine.state.iteration

            self.interval_checkpoint = Checkpoint(
                to_save=save_dict,
                save_handler=_AtomicDiskSaver(save_dir),
                filename_prefix=file_prefix,
                score_function=step,
                score_name="epoch" if epoch_level else "iteration",
                n_saved=n_saved,
            )

    def attach(self, engine) -> None:
        """Register the saves on ``engine`` (a trainer or an evaluator)."""
        if self.key_metric_checkpoint is not None:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.key_metric_checkpoint)
        if self.interval_checkpoint is not None:
            event = Events.EPOCH_COMPLETED if self.epoch_level else Events.ITERATION_COMPLETED
            engine.add_event_handler(event(every=self.save_interval), self.interval_checkpoint)


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
    return latest_checkpoint_of(glob.glob(os.path.join(ckpt_dir, f"{CHECKPOINT_PREFIX}_*.pt")))


def prune_checkpoints(ckpt_dir: str, keep_last: int = 1) -> list[str]:
    """Delete all but the ``keep_last`` newest ``checkpoint_*.pt`` files of ``ckpt_dir``; return what was removed.

    MONAI's saver only rotates the files it wrote itself, so a resumed run would leave the
    checkpoints of the interrupted run behind.
    """
    files = glob.glob(os.path.join(ckpt_dir, f"{CHECKPOINT_PREFIX}_*.pt"))
    newest = set()
    remaining = list(files)
    for _ in range(max(int(keep_last), 0)):
        latest = latest_checkpoint_of(remaining)
        if latest is None:
            break
        newest.add(latest)
        remaining.remove(latest)
    removed = [f for f in files if f not in newest]
    for path in removed:
        os.remove(path)
    return removed


def latest_checkpoint_of(files: list[str]) -> str | None:
    """The newest of ``checkpoint_epoch=N.pt`` files (highest N, then modification time)."""
    if not files:
        return None

    def key(path: str) -> tuple[int, float]:
        stem = os.path.basename(path)[len(CHECKPOINT_PREFIX) + 1 : -3]
        digits = "".join(ch for ch in stem.split("=")[-1] if ch.isdigit())
        return (int(digits) if digits else -1, os.path.getmtime(path))

    return max(files, key=key)


def attach_resumable_checkpoints(
    trainer, ckpt_dir: str, resume: bool = False, save_interval: int = 1, n_saved: int = 1, keep_last: int | None = None
) -> str | None:
    """Attach full-state saving (and, with ``resume``, loading) to a trainer.

    Saves every object of ``trainer.checkpoint_objects()`` (student, teacher,
    discriminator, optimizers, AMP scalers, iteration) with MONAI's
    :class:`~monai.handlers.CheckpointSaver` every ``save_interval`` epochs and at the
    end, as ``checkpoint_epoch=N.pt``. With ``resume=True`` the latest such file is
    loaded with :class:`~monai.handlers.CheckpointLoader` before training starts.
    Only rank 0 writes in a distributed run. After each save, all but the ``keep_last``
    newest checkpoints (default ``n_saved``) are removed, including those an interrupted
    run left behind. Without ``resume``, checkpoints already in ``ckpt_dir`` belong to an
    earlier run and are removed (with a warning) before this one saves its own.

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
    elif is_main:
        # a fresh run in a folder that holds an earlier run's checkpoints: those would later be
        # taken for this run's (the highest epoch wins when pruning or resuming), so remove them
        stale = glob.glob(os.path.join(ckpt_dir, f"{CHECKPOINT_PREFIX}_*.pt"))
        if stale:
            logger.warning(
                f"starting a fresh run in {ckpt_dir}: removing {len(stale)} checkpoint(s) of an earlier run "
                f"({', '.join(sorted(os.path.basename(p) for p in stale))}); pass resume=True to continue that run instead."
            )
            for path in stale:
                os.remove(path)
    if is_main:
        saver = AtomicCheckpointSaver(
            save_dir=ckpt_dir, save_dict=objects, file_prefix="", save_interval=save_interval, epoch_level=True, n_saved=n_saved
        )
        saver.attach(trainer)
        keep = n_saved if keep_last is None else int(keep_last)
        # after the saver (handlers run in the order they were attached): drop older checkpoints,
        # also those of an interrupted run that this one resumed
        trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: prune_checkpoints(ckpt_dir, keep))
    return resumed


