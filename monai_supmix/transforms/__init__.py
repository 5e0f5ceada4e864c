"""MONAI-style transforms for Supervised ClassMix (SupMix) and ClassMix (functional, array and dictionary), and the strong perturbation of the student's view."""

from .array import ClassMix, SupervisedClassMix
from .dictionary import (
    ClassMixd,
    ClassMixD,
    ClassMixDict,
    SupervisedClassMixd,
    SupervisedClassMixD,
    SupervisedClassMixDict,
)
from .functional import CLASS_POLICIES, class_frequencies, class_mix, select_classes, supervised_class_mix
from .perturbation import PERTURBATION_PRESETS, BatchPerturbation, BatchStrongPerturbation, strong_perturbation

__all__ = [
    "CLASS_POLICIES",
    "PERTURBATION_PRESETS",
    "BatchPerturbation",
    "BatchStrongPerturbation",
    "strong_perturbation",
    "class_frequencies",
    "class_mix",
    "select_classes",
    "supervised_class_mix",
    "SupervisedClassMix",
    "ClassMix",
    "SupervisedClassMixd",
    "SupervisedClassMixD",
    "SupervisedClassMixDict",
    "ClassMixd",
    "ClassMixD",
    "ClassMixDict",
]
