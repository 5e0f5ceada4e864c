"""Support code that the MONAI bundles in ``bundles/`` reference by dotted path."""

from .config_check import check_config, validate_values
from .paths import default_cache_dir, resolve_bundle_root
from .inference import segment_folder
from .reporting import report_evaluation, report_training, require_file
from .task_data import PHANTOM_DEFAULTS, TASKS, task_datalists

__all__ = [
    "check_config",
    "report_training",
    "report_evaluation",
    "require_file",
    "segment_folder",
    "validate_values",
    "default_cache_dir",
    "resolve_bundle_root",
    "task_datalists",
    "TASKS",
    "PHANTOM_DEFAULTS",
]
