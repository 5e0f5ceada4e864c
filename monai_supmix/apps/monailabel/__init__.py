"""MONAI Label integration: serve the monai_supmix bundles and train them semi-supervised from a datastore.

Importing this package never needs ``monailabel``: the pure helpers (datalists, app
folder creation) are always there, and the MONAI Label classes (:class:`SupMixApp`,
:class:`SupMixInferTask`, :class:`SupMixTrainTask`) are imported on first use, with an
``ImportError`` that says how to get MONAI Label when it is absent. MONAI Label pins
older libraries, so it lives in a virtual environment of its own: see
``docs/monailabel.md`` and ``.ci/monailabel_env.sh``.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from .datalist import DATALIST_FILENAME, datastore_datalist, write_datalist_file
from .scaffold import APP_MAIN, BUNDLE_FILES, create_app, find_bundles

__all__ = [
    "APP_MAIN",
    "BUNDLE_FILES",
    "DATALIST_FILENAME",
    "SupMixApp",
    "SupMixInferTask",
    "SupMixTrainTask",
    "create_app",
    "datastore_datalist",
    "find_bundles",
    "is_monailabel_available",
    "write_datalist_file",
]

_LAZY = {"SupMixApp": ".app", "SupMixInferTask": ".tasks", "SupMixTrainTask": ".tasks"}


def is_monailabel_available() -> bool:
    """Whether ``monailabel`` can be imported in this environment."""
    return importlib.util.find_spec("monailabel") is not None


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if not is_monailabel_available():
        raise ImportError(
            f"monai_supmix.apps.monailabel.{name} needs MONAI Label, which is not installed in this environment. "
            "Create its own virtual environment with `bash .ci/monailabel_env.sh` (see docs/monailabel.md)."
        )
    return getattr(importlib.import_module(_LAZY[name], __name__), name)
