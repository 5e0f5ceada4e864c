"""Engines: the semi-supervised trainer and the components it calls (mean teacher, pseudo-label loss, mixing, SUFD,
feature perturbation, distribution alignment, self-training gate)."""

from .distribution_alignment import DistributionAlignment
from .feature_perturbation import FeaturePerturbation, bottleneck_layer
from .mean_teacher import MeanTeacher
from .mixing import (
    MIX_MODES,
    ClassMixing,
    MixBatch,
    ReverseSupervisedMixing,
    SequentialMixing,
    SupervisedMixing,
    build_mixing,
)
from .pseudo_label import PseudoLabelLoss
from .self_training_gate import SelfTrainingGate
from .semi_supervised_trainer import SemiSupervisedTrainer
from .sufd import ADVERSARIAL_CRITERIA, DISCRIMINATOR_INPUTS, OUTPUT_FEATURES, SUFD, adversarial_loss
from .utils import LOSS_TERMS, loss_terms

__all__ = [
    "SemiSupervisedTrainer",
    "SUFD",
    "MeanTeacher",
    "PseudoLabelLoss",
    "FeaturePerturbation",
    "DistributionAlignment",
    "SelfTrainingGate",
    "bottleneck_layer",
    "MixBatch",
    "ClassMixing",
    "SupervisedMixing",
    "ReverseSupervisedMixing",
    "SequentialMixing",
    "build_mixing",
    "adversarial_loss",
    "MIX_MODES",
    "DISCRIMINATOR_INPUTS",
    "ADVERSARIAL_CRITERIA",
    "OUTPUT_FEATURES",
    "LOSS_TERMS",
    "loss_terms",
]
