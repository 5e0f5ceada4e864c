"""Validate a bundle's top-level keys before training starts."""

from __future__ import annotations

import glob
import importlib
import inspect
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

from monai.bundle import ConfigWorkflow

__all__ = ["check_config", "validate_values", "KEY_SCHEMA", "RESERVED_KEYS"]

#: Keys that MONAI's bundle machinery may add to a config (tracking, execution).
RESERVED_KEYS = frozenset(
    {
        "bundle_root",
        "ckpt_dir",
        "output_dir",
        "save_execute_config",
        "execute_config",
        "tracking",
        "tracking_uri",
        "experiment_name",
        "run_name",
        "is_not_rank0",
        "handlers_id",
        "configs",
    }
)

_POLICIES = ("rarest", "inverse_frequency", "random_half")


def _is_expression(value: Any) -> bool:
    return isinstance(value, str) and value[:1] in ("$", "@", "%")


def _require(ok: bool, key: str, expected: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"config key `{key}`: expected {expected}, got {value!r}.")


# --------------------------------------------------------------------------- the key schema
def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _integer(minimum: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum), f"an integer >= {minimum}"


def _int_list(lengths: tuple[int, ...] | None, minimum: int, expected: str) -> tuple[Callable[[Any], bool], str]:
    def check(value: Any) -> bool:
        return (isinstance(value, (list, tuple)) and (len(value) in lengths if lengths else len(value) >= 1)
                and all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value))

    return check, expected


def _choice(module: str, name: str) -> tuple[Callable[[Any], bool], Callable[[], str]]:
    """Membership in the tuple ``module.name`` of the component that uses it (imported when checked: no import cycle)."""

    def names() -> tuple:
        return tuple(getattr(importlib.import_module(module), name))

    return (lambda v: v in names()), (lambda: f"one of {names()}")


_BOOLEAN = (lambda v: isinstance(v, bool)), "true or false (on the command line: True/False)"
_POSITIVE = (lambda v: _number(v) and v > 0), "a positive number"
_NON_NEGATIVE = (lambda v: _number(v) and v >= 0), "a number >= 0"
_UNIT_OPEN = (lambda v: _number(v) and 0 <= v < 1), "a number in [0, 1)"

#: key -> (check, what is expected): the type and range of every tunable top-level key that
#: needs no other key to be checked (the keys that do follow in :func:`validate_values`).
KEY_SCHEMA: dict[str, tuple[Callable[[Any], bool], str | Callable[[], str]]] = {
    **dict.fromkeys(("num_labeled", "max_epochs", "batch_size", "unlabeled_batch_size", "iterations_per_epoch",
                     "keep_checkpoints", "discriminator_pool"), _integer(1)),
    **dict.fromkeys(("num_val", "num_workers", "seed", "rampup_iterations", "val_interval",
                     "discriminator_warmup_iterations", "paste_margin"), _integer(0)),
    **dict.fromkeys(("sufd", "amp", "resume", "deterministic", "validate_with_teacher", "strong_perturbation", "debug",
                     "supmix_within_region", "supmix_flip_source", "class_adaptive_threshold",
                     "distribution_alignment"), _BOOLEAN),
    **dict.fromkeys(("learning_rate", "discriminator_learning_rate"), _POSITIVE),
    **dict.fromkeys(("unsupervised_weight", "adversarial_weight", "perturbation_strength", "supmix_feather_sigma",
                     "unsupervised_dice_weight"), _NON_NEGATIVE),
    **dict.fromkeys(("confidence_threshold", "discriminator_label_smoothing", "feature_dropout"), _UNIT_OPEN),
    "ema_decay": ((lambda v: _number(v) and 0 < v < 1), "a number in (0, 1)"),
    "supmix_prob": ((lambda v: _number(v) and 0 <= v <= 1), "a number in [0, 1]"),
    "self_training_min_dice": ((lambda v: _number(v) and 0 <= v <= 1), "a number in [0, 1] (0: no self-training gate)"),
    "unlabeled_intensity_ratio": ((lambda v: _number(v) and 0 <= v <= 1),
                                  "a number in [0, 1] (0: keep every unlabeled image)"),
    "scale": ((lambda v: _number(v) and v > 0), "a positive number (e.g. 0.5 for half resolution)"),
    "num_classes": (_integer(2)[0], "an integer >= 2 (background + at least one class)"),
    "in_channels": _integer(1),
    "discriminator_channels": _int_list(None, 1, "a list of positive integers, one per strided block, e.g. [32, 64]"),
    "spatial_size": _int_list((2, 3), 16, "a list of 2 (or 3) integers >= 16, e.g. [192, 192]"),
    "patch_size": _int_list((2, 3), 16, "a list of 2 (or 3) integers >= 16"),
    "mix": _choice("monai_supmix.engines", "MIX_MODES"),
    "discriminator_input": _choice("monai_supmix.engines", "DISCRIMINATOR_INPUTS"),
    "intensity_normalization": _choice("monai_supmix.data.transforms", "INTENSITY_MODES"),
    "class_names": ((lambda v: isinstance(v, (list, tuple)) and all(isinstance(n, str) for n in v)),
                    "a list of names, one per class"),
}


def validate_values(config: Mapping[str, Any]) -> None:
    """Check the types and ranges of the tunable top-level keys present in ``config``.

    Each key is checked against :data:`KEY_SCHEMA`; then the keys whose check needs another
    key (``class_names`` and the class lists against ``num_classes``), the folder and the
    device. Values that are config expressions (``$...``, ``@...``) are not checked.

    Raises:
        ValueError: naming the first offending key, what was expected and what was found.
        FileNotFoundError: for a ``dataset_dir`` that does not exist.
    """

    def get(key: str) -> Any:
        value = config.get(key)
        return None if _is_expression(value) else value

    for key, (check, expected) in KEY_SCHEMA.items():
        value = get(key)
        if value is not None:
            _require(check(value), key, expected() if callable(expected) else expected, value)
    num_classes = get("num_classes")
    names = get("class_names")
    if names is not None and isinstance(num_classes, int) and len(names) != num_classes:
        raise ValueError(
            f"config key `class_names`: {len(names)} names {list(names)} for num_classes={num_classes}; "
            f"give one name per class, e.g. --class_names \"{list(names)[:num_classes] + [f'class_{i}' for i in range(len(names), num_classes)]}\"."
        )
    for key in ("supmix_classes", "classmix_classes"):
        value = get(key)
        if value is None:
            continue
        if isinstance(value, str):
            _require(value in _POLICIES, key, f"a list of class indices or one of {_POLICIES}", value)
        else:
            ok = isinstance(value, (list, tuple)) and len(value) > 0
            ok = ok and all(isinstance(v, int) and v >= 0 and (num_classes is None or v < num_classes) for v in value)
            expected = "a non-empty list of class indices" + (
                f" in [0, {num_classes - 1}]" if isinstance(num_classes, int) else ""
            )
            _require(ok, key, expected, value)
    value = get("dataset_dir")
    if value is not None:
        _require(isinstance(value, str), "dataset_dir", "a folder path or null", value)
        if not os.path.isdir(os.path.expanduser(value)):
            raise FileNotFoundError(f"config key `dataset_dir`: folder {value!r} does not exist.")
    value = get("device")
    if value is not None:
        _check_device(value)


def _check_device(value: Any) -> None:
    """``device`` must name a torch device this machine has: ``cpu``, ``cuda``, ``cuda:N`` (or ``mps``)."""
    import re

    import torch

    text = str(value)
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", text):
        raise ValueError(f"config key `device`: expected 'cpu', 'cuda' or 'cuda:N', got {value!r}.")
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"config key `device`: {value!r} was asked for but PyTorch sees no CUDA device "
                f"(torch {torch.__version__}, a CPU build or no driver); use --device cpu or install a CUDA build."
            )
        index = int(text.split(":")[1]) if ":" in text else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"config key `device`: {value!r}, but only {torch.cuda.device_count()} CUDA device(s) exist.")
    if text == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("config key `device`: 'mps' is not available on this machine; use --device cpu.")


def _running_workflow() -> Any:
    frame = inspect.currentframe()
    while frame is not None:
        owner = frame.f_locals.get("self")
        if isinstance(owner, ConfigWorkflow):
            return owner
        frame = frame.f_back
    return None


def _known_keys(config_dir: str) -> set[str]:
    keys: set[str] = set()
    for path in glob.glob(os.path.join(config_dir, "*.json")):
        if os.path.basename(path) == "metadata.json":
            continue
        with open(path) as f:
            content = json.load(f)
        if isinstance(content, dict):
            keys.update(content)
    return keys


def check_config(config: Mapping[str, Any] | None = None, config_dir: str | None = None) -> bool:
    """Validate the running bundle's config: unknown top-level keys, types and ranges.

    Called from a bundle's ``initialize`` list. Without arguments it finds the running
    :class:`monai.bundle.ConfigWorkflow`, so that command-line overrides are checked
    too: a misspelt ``--num_labled 2`` fails here, naming the key, instead of being
    silently ignored.

    Args:
        config: the raw config (default: the running workflow's).
        config_dir: folder of the bundle's config files, whose keys are the known ones.

    Returns:
        True when the config is valid.

    Raises:
        ValueError: for an unknown key or a wrong value, naming the key.
    """
    if config is None or config_dir is None:
        workflow = _running_workflow()
        if workflow is None:
            raise RuntimeError("check_config() without arguments must be called from a running bundle workflow.")
        config = workflow.parser.get() if config is None else config
        config_dir = str(workflow.config_root_path) if config_dir is None else config_dir
    known = _known_keys(config_dir) | RESERVED_KEYS
    unknown = sorted(k for k in config if k not in known and not k.startswith("_"))
    if unknown:
        import difflib

        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hints.append(f"`{key}`" + (f" (did you mean `{close[0]}`?)" if close else ""))
        raise ValueError(
            f"unknown config key(s): {', '.join(hints)}. Known keys are those of the bundle's configs in {config_dir}."
        )
    validate_values(config)
    return True
