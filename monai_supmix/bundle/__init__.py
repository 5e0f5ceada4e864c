"""Support code that the MONAI bundles in ``bundles/`` reference by dotted path."""

from .config_check import check_config, validate_values
from .console import install_log_filters
from .errors import install_error_handler
from .paths import default_cache_dir, resolve_bundle_root
from .inference import segment_folder
from .settings import TrainingSettings, check_training_settings, read_training_settings, trained_setting
from .reporting import report_evaluation, report_training, require_file
from .task_data import PHANTOM_DEFAULTS, SPLIT_DEFAULTS, TASKS, task_datalists, task_items

__all__ = [
    "TrainingSettings",
    "check_training_settings",
    "read_training_settings",
    "trained_setting",
    "check_config",
    "install_error_handler",
    "install_log_filters",
    "report_training",
    "report_evaluation",
    "require_file",
    "segment_folder",
    "validate_values",
    "default_cache_dir",
    "resolve_bundle_root",
    "task_datalists",
    "task_items",
    "TASKS",
    "PHANTOM_DEFAULTS",
    "SPLIT_DEFAULTS",
]
