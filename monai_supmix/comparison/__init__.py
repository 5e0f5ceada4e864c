"""Paired, cross-validated comparisons of training methods: folds, labeled draws, statistics, reports."""

from .splits import dataset_key, draw_labeled, group_folds, group_of

__all__ = ["dataset_key", "draw_labeled", "group_folds", "group_of"]
