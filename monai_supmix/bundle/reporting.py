"""Final summary lines printed by the bundles."""

from __future__ import annotations

import os

import torch

__all__ = ["report_training", "report_evaluation", "require_file"]



def report_training(evaluator, ckpt_dir: str, final_model=None, settings=None) -> dict:
    """Print the best validation mIoU of a finished training and where the model is.

    Without any validation (no validation images, e.g. every labeled image used for training as
    in COVID-SemiSeg's setting, or ``val_interval`` beyond ``max_epochs``) nothing picked a
    ``model.pt``: the final ``final_model`` (the network validation would have judged: the EMA
    teacher by default) is saved there with the training ``settings``, written atomically.

    Returns:
        ``{"best_val_miou", "best_epoch", "model"}``.
    """
    if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return {}
    best = float(evaluator.state.best_metric)
    if int(evaluator.state.best_metric_epoch) <= 0:
        if final_model is None:
            print(f"Training finished without validation (val_interval larger than max_epochs); checkpoints in {ckpt_dir}",
                  flush=True)
            return {"best_val_miou": None, "best_epoch": None, "model": None}
        from monai_supmix.utils.distributed import unwrap_module
        from monai_supmix.utils.files import atomic_write

        path = os.path.join(ckpt_dir, "model.pt")
        state = {"model": unwrap_module(final_model).state_dict()}
        if settings is not None:
            state["settings"] = settings.state_dict() if hasattr(settings, "state_dict") else dict(settings)
        atomic_write(path, lambda tmp: torch.save(state, tmp))
        print(f"Training finished without validation: the final model saved to {path}", flush=True)
        return {"best_val_miou": None, "best_epoch": None, "model": path}
    summary = {
        "best_val_miou": best,
        "best_epoch": int(evaluator.state.best_metric_epoch),
        "model": os.path.join(ckpt_dir, "model.pt"),
    }
    message = (
        f"Training finished: best validation mIoU = {best:.4f} (epoch {summary['best_epoch']}); "
        f"model saved to {summary['model']}"
    )
    print(message, flush=True)
    return summary


def require_file(path: str, key: str) -> bool:
    """Fail early, naming the config key, when a file the workflow needs is missing.

    Raises:
        FileNotFoundError: when ``path`` is not a file.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"config key `{key}`: file {path!r} not found (train the bundle first, or pass --{key} <file>)."
        )
    return True


def report_evaluation(metrics_file: str) -> dict:
    """Print the evaluation summary written by :class:`~monai_supmix.handlers.PerClassMetricsWriter`."""
    import json

    if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return {}
    with open(metrics_file) as f:
        results = json.load(f)
    per_class = ", ".join(f"{k}: {v:.4f}" for k, v in results["iou"].items())
    message = f"Evaluation: mIoU = {results['miou']:.4f} (IoU {per_class}); metrics written to {metrics_file}"
    print(message, flush=True)
    return results
