"""Training-time data settings stored with the model, checked by evaluation and inference.

A model trained at ``--scale 0.5`` on real CHASE_DB1 images and then evaluated at full
resolution, or on the built-in phantoms because ``--dataset_dir`` was forgotten, gives
numbers that look plausible and mean nothing. The bundles therefore save the settings
that define what the model expects (task, resolution, classes, channels) and where its
data came from in ``model.pt`` beside the weights (``{"model": ..., "settings": ...}``),
and ``evaluate.json`` / ``inference.json`` call :func:`check_training_settings` before
they run: a different preprocessing is refused with a message that names the keys and
the training values; evaluating a model trained on real data on the phantoms is refused
too. Checkpoints without settings (written by other tools) are accepted with a warning.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

import torch

__all__ = [
    "TrainingSettings",
    "read_training_settings",
    "trained_setting",
    "check_training_settings",
    "PREPROCESSING_KEYS",
]

#: Keys that change what the network sees or predicts: they must match the training run.
PREPROCESSING_KEYS = (
    "task", "scale", "spatial_size", "intensity_normalization", "patch_size", "num_classes", "class_names", "in_channels"
)
#: Keys that say where the training data came from (recorded, and checked for the phantom fallback).
DATA_KEYS = ("dataset_dir", "datalist_file", "num_labeled", "num_val")


def _plain(value: Any) -> Any:
    """JSON-like plain values (checkpoints are loaded with ``weights_only=True``)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


class TrainingSettings:
    """The data settings of a training run, saved in ``model.pt`` through the ``state_dict`` protocol.

    Args:
        settings: keyword arguments, e.g. ``task``, ``scale``, ``num_classes``, ``dataset_dir``.
    """

    def __init__(self, **settings: Any) -> None:
        self.settings = {k: _plain(v) for k, v in settings.items()}

    def state_dict(self) -> dict:
        return dict(self.settings)

    def load_state_dict(self, state: Mapping) -> None:
        self.settings = dict(state)


def read_training_settings(ckpt_path: str) -> dict | None:
    """The settings saved with a bundle's ``model.pt`` (``None`` when it has none or does not exist)."""
    if not os.path.isfile(ckpt_path):
        return None
    state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    settings = state.get("settings") if isinstance(state, dict) else None
    return dict(settings) if isinstance(settings, dict) else None


def trained_setting(ckpt_path: str, key: str, default: Any) -> Any:
    """The value of ``key`` that ``model.pt`` was trained with, else ``default``.

    Evaluation and inference configs use it as the default of their preprocessing keys
    (scale, sizes, classes, channels, intensity), so a user does not type the training
    settings again; a value given on the command line replaces it and is then checked
    against the training run (:func:`check_training_settings`).
    """
    saved = read_training_settings(ckpt_path) if isinstance(ckpt_path, str) else None
    if not saved or saved.get(key) is None:
        return default
    return saved[key]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(float(a) - float(b)) < 1e-9
    return _plain(a) == _plain(b)


def check_training_settings(ckpt_path: str, purpose: str, **current: Any) -> dict:
    """Refuse to evaluate or apply a model with other preprocessing than it was trained with.

    Args:
        ckpt_path: the ``model.pt`` to use.
        purpose: ``"evaluation"`` or ``"inference"`` (for the messages; evaluation also
            refuses to fall back to the phantoms for a model trained on real data).
        current: this run's values of :data:`PREPROCESSING_KEYS` (and, for evaluation,
            ``dataset_dir``/``datalist_file``); keys a run does not have are not compared.

    Returns:
        the saved settings (``{}`` for a checkpoint without them).

    Raises:
        ValueError: naming every key whose value differs from training, with the value to pass.
    """
    saved = read_training_settings(ckpt_path)
    if saved is None:
        warnings.warn(
            f"{ckpt_path} records no training settings (it was not written by this package's bundles): "
            f"the {purpose} cannot check that scale, size, classes and channels match the training run.",
            stacklevel=2,
        )
        return {}
    differ = [k for k in PREPROCESSING_KEYS if k in saved and k in current and not _same(saved[k], current[k])]
    if differ:
        trained = " ".join(f"--{k} {_cli(saved[k])}" for k in differ)
        now = ", ".join(f"{k}={_cli(current[k])}" for k in differ)
        raise ValueError(
            f"{ckpt_path} was trained with {trained} but this {purpose} uses {now}; "
            f"pass {trained} (a model only works on data prepared as in its training)."
        )
    trained_on_real = saved.get("dataset_dir") is not None or saved.get("datalist_file") is not None
    asks_phantoms = "dataset_dir" in current and current.get("dataset_dir") is None and current.get("datalist_file") is None
    if purpose == "evaluation" and trained_on_real and asks_phantoms:
        source = saved.get("dataset_dir") or saved.get("datalist_file")
        key = "dataset_dir" if saved.get("dataset_dir") is not None else "datalist_file"
        raise ValueError(
            f"{ckpt_path} was trained on {source} but no --dataset_dir or --datalist_file was given, so this "
            f"evaluation would score the built-in synthetic phantoms; pass --{key} {source}."
        )
    return saved


def _cli(value: Any) -> str:
    """A value as it is written on the bundle command line."""
    import json

    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)
