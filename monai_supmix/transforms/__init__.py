"""MONAI-style transforms for Supervised ClassMix (SupMix) and ClassMix."""

from .functional import CLASS_POLICIES, class_frequencies, class_mix, select_classes, supervised_class_mix

__all__ = ["CLASS_POLICIES", "class_frequencies", "class_mix", "select_classes", "supervised_class_mix"]
