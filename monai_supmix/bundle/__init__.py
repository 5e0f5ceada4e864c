"""Support code that the MONAI bundles in ``bundles/`` reference by dotted path."""

from .config_check import check_config, validate_values
from .paths import default_cache_dir, resolve_bundle_root
from .reporting import report_training
from .task_data import PHANTOM_DEFAULTS, TASKS, task_datalists

__all__ = [
    "check_config",
    "report_training",
    "validate_values",
    "default_cache_dir",
    "resolve_bundle_root",
    "task_datalists",
    "TASKS",
    "PHANTOM_DEFAULTS",
]
