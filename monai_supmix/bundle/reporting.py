"""Final summary lines printed by the bundles."""

from __future__ import annotations

import logging
import os

import torch

__all__ = ["report_training"]

logger = logging.getLogger("monai_supmix")


def report_training(evaluator, ckpt_dir: str) -> dict:
    """Print the best validation mIoU of a finished training and where the model is.

    Returns:
        ``{"best_val_miou", "best_epoch", "model"}``.
    """
    if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return {}
    best = float(evaluator.state.best_metric)
    summary = {
        "best_val_miou": best,
        "best_epoch": int(evaluator.state.best_metric_epoch),
        "model": os.path.join(ckpt_dir, "model.pt"),
    }
    message = (
        f"Training finished: best validation mIoU = {best:.4f} (epoch {summary['best_epoch']}); "
        f"model saved to {summary['model']}"
    )
    logger.info(message)
    print(message, flush=True)
    return summary
