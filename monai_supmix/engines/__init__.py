"""Engines: the semi-supervised trainer."""

from .semi_supervised_trainer import DISCRIMINATOR_INPUTS, MIX_MODES, SemiSupervisedTrainer
from .utils import LOSS_TERMS, loss_terms

__all__ = ["SemiSupervisedTrainer", "MIX_MODES", "DISCRIMINATOR_INPUTS", "LOSS_TERMS", "loss_terms"]
