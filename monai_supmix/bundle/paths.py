"""Locate a bundle's root folder from inside its own config."""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path

from monai.bundle import ConfigWorkflow

__all__ = ["resolve_bundle_root", "default_cache_dir"]


def _root_of_config_dir(config_dir: Path) -> Path:
    return config_dir.parent if config_dir.name == "configs" else config_dir


def resolve_bundle_root(default: str | None = None) -> str:
    """Return the absolute bundle folder of the config being parsed.

    A MONAI bundle config cannot see its own path, yet our bundles must run from any
    working directory (``python -m monai.bundle run training --config_file
    bundles/chase/configs/train.json``). The running
    :class:`monai.bundle.ConfigWorkflow` knows its ``config_root_path``, so this walks
    the call stack to find it. Fallbacks, in order: a ``--config_file`` argument on the
    command line, ``default``, the current directory.
    """
    frame = inspect.currentframe()
    while frame is not None:
        owner = frame.f_locals.get("self")
        if isinstance(owner, ConfigWorkflow):
            return str(_root_of_config_dir(Path(owner.config_root_path)).resolve())
        frame = frame.f_back
    argv = sys.argv
    for i, arg in enumerate(argv):
        value = None
        if arg == "--config_file" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--config_file="):
            value = arg.split("=", 1)[1]
        if value:
            first = value.strip("[]'\" ").split(",")[0].strip("'\" ")
            return str(_root_of_config_dir(Path(first).resolve().parent))
    return str(Path(default).resolve()) if default else os.getcwd()


def default_cache_dir() -> str:
    """Folder for generated phantoms and slice caches: ``$MONAI_SUPMIX_CACHE`` or ``~/.cache/monai_supmix``."""
    return os.environ.get("MONAI_SUPMIX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "monai_supmix"))
