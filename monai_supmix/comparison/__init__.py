"""Paired, cross-validated comparisons of training methods: folds, labeled draws, runs, statistics, reports.

The machinery behind ``monai-supmix compare`` (does semi-supervised training pay on my
images?) and behind the project's own benchmark (``benchmarks/run_paper_benchmark.py``).
"""

from .report import compute_claims, method_scores, plot_labels_curve, verdict_words, write_outputs
from .runner import METHODS, ResultStore, bundle_command, run_grid, train_and_evaluate
from .splits import dataset_key, draw_labeled, group_folds, group_of
from .statistics import (
    INTERVAL_METHOD,
    apply_holm,
    compare_methods,
    fold_deltas,
    holm,
    image_counts,
    mixed_thread_runs,
    out_of_fold_counts,
    pooled_iou,
    pooled_miou,
    sign_test,
    t_interval,
    verdict,
)

__all__ = [
    "METHODS",
    "INTERVAL_METHOD",
    "ResultStore",
    "apply_holm",
    "bundle_command",
    "compare_methods",
    "compute_claims",
    "dataset_key",
    "draw_labeled",
    "fold_deltas",
    "group_folds",
    "group_of",
    "holm",
    "image_counts",
    "method_scores",
    "mixed_thread_runs",
    "out_of_fold_counts",
    "plot_labels_curve",
    "pooled_iou",
    "pooled_miou",
    "run_grid",
    "sign_test",
    "t_interval",
    "train_and_evaluate",
    "verdict",
    "verdict_words",
    "write_outputs",
]
